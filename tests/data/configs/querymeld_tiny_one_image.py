# The tiny QueryMeldNet overfitting ONE synthetic panoptic image (tests: tools/train.py --amp).
# Data: mmquerymeld.testing.generate_synthetic_world(<cwd>/data/synthetic, img_size=64); run
# tools/train.py from the folder that holds data/. No augmentation, no validation, constant lr.
_base_ = ['../../../configs/demo/querymeld_tiny_synthetic.py']

one_image_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadCocoPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='ToUnifiedTargets', max_texts=8),
    dict(type='PackQueryMeldInputs'),
]
train_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[dict(
            name='syn_coco_panoptic', task='panoptic', pipeline=one_image_pipeline,
            dataset=dict(type='QMCocoPanopticDataset', data_root='data/synthetic/',
                         ann_file='coco/annotations/panoptic_train2017.json',
                         data_prefix=dict(img='coco/train2017/',
                                          seg='coco/annotations/panoptic_train2017/'),
                         indices=1, filter_cfg=dict(filter_empty_gt=False)))]))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

max_iters = 20
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, _delete_=True)
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=1.0))
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=max_iters, save_last=False))
