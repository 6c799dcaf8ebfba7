# Table 2 query strategy: query meld: 100 learnable + 300 conditional queries (the paper's default).
# querymeld_r50_learnable.py and querymeld_r50_conditional.py inherit this file and change only
# the query counts.
# Data: COCO panoptic + ADE20K semantic (Table 2's two-dataset setting).
_base_ = [
    '../_base_/models/querymeld_r50.py',
    '../_base_/datasets/coco_panoptic_ade_semantic.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_50e.py',
]

model = dict(head=dict(num_learnable_queries=100, num_conditional_queries=300))
