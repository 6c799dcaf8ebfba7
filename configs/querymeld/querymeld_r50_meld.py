# Table 2 query strategy: query meld: 100 learnable + 300 conditional queries (the paper's default).
# querymeld_r50_learnable.py and querymeld_r50_conditional.py inherit this file and change only
# the query counts.
# Data: COCO panoptic + ADE20K semantic (Table 2's two-dataset setting).
# Pretrained starts (paper section 4.1, appendix A.2): an ImageNet ResNet-50 (torchvision's, as
# mmdet's configs) and OpenAI's CLIP ViT-B/16 text tower (open_clip tag 'openai'; those weights use
# QuickGELU, hence 'ViT-B-16-quickgelu'). tools/train.py fetches both into their caches on first
# use; offline it stops with the files to download and the keys to point at them:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/resnet50-0676ba61.pth \
#                 model.head.text_encoder.pretrained=/path/to/ViT-B-16.pt
_base_ = [
    '../_base_/models/querymeld_r50.py',
    '../_base_/datasets/coco_panoptic_ade_semantic.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_50e.py',
]

model = dict(
    # _delete_: the base model's init_cfg is None
    backbone=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint='torchvision://resnet50')),
    head=dict(
        num_learnable_queries=100,
        num_conditional_queries=300,
        text_encoder=dict(model_name='ViT-B-16-quickgelu', pretrained='openai')))
