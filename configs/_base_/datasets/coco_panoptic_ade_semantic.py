# Table 2's two-dataset mixture: COCO panoptic + ADE20K semantic, each with its own pipeline
# (LSJ for COCO, 512 crops for ADE), sampled by Table 11's ratios; evaluated with PQ + mask AP
# on COCO and mIoU on ADE20K.
_base_ = ['./coco_panoptic.py', './ade20k_semantic.py']

train_dataloader = dict(
    batch_size=4,  # x 8 GPUs = 32, the batch size of section 4.1
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='MultiSourceRatioSampler', ratio_mode='repeat', shuffle=True),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[{{_base_.coco_panoptic_train}}, {{_base_.ade_semantic_train}}]))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[{{_base_.coco_panoptic_val}}, {{_base_.ade_semantic_val}}]))
test_dataloader = val_dataloader
val_evaluator = [dict(
    type='MultiSourceMetric',
    metrics=dict(
        coco_panoptic=[
            dict(type='PanopticQualityMetric'),
            dict(type='OpenVocabCocoMetric', metric='segm',
                 ann_file='data/coco/annotations/instances_val2017.json')
        ],
        ade_semantic=dict(type='OpenVocabIoUMetric')))]
test_evaluator = val_evaluator
