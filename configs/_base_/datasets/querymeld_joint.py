# The paper's joint training mixture (section 4.3, appendix A.2): every dataset with its own
# pipeline, sampled with Table 11's per-dataset upsampling ratios (ratio_mode='repeat': a
# dataset of N images with ratio r contributes r * N draws per epoch). Table 11's COCO ratio is
# not legible in our copy of the paper; 3 is an assumption. Visual Genome (ratio 9) needs its
# own box/caption JSONs in BoxCaptionDataset format and is left out here.
_base_ = [
    './coco_panoptic.py', './coco_instance.py', './lvis.py', './ade20k_semantic.py',
    './refcoco.py', './foreground.py', './objects365_syn.py', './pascal_context459.py'
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='MultiSourceRatioSampler', ratio_mode='repeat', shuffle=True),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[
            {{_base_.coco_panoptic_train}}, {{_base_.lvis_train}},
            {{_base_.ade_semantic_train}}, {{_base_.refcoco_train}},
            {{_base_.refcocop_train}}, {{_base_.refcocog_train}}, {{_base_.duts_train}},
            {{_base_.dis5k_train}}, {{_base_.hrsod_train}}, {{_base_.o365_syn_train}},
            {{_base_.o365_caption_train}}
        ]))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[
            {{_base_.coco_panoptic_val}}, {{_base_.ade_semantic_val}},
            {{_base_.refcocog_val}}, {{_base_.duts_val}}
        ]))
test_dataloader = val_dataloader
