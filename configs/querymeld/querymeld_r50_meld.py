# Table 2 query strategy: query meld: 100 learnable + 300 conditional queries (the paper's default).
# The three strategy configs inherit the same bases and differ only in the query counts.
# Data: COCO panoptic + ADE20K semantic (Table 2's two-dataset setting).
_base_ = [
    '../_base_/models/querymeld_r50.py',
    '../_base_/datasets/coco_panoptic_ade_semantic.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_50e.py',
]

model = dict(head=dict(num_learnable_queries=100, num_conditional_queries=300))
