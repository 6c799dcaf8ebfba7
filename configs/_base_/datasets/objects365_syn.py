# Objects365 boxes joined with synthetic masks (box-prompted segmenter) and synthetic captions
# (five per box, one sampled per iteration), section 3.4. Boxes without a synthetic mask stay
# box-only (mask_valid False). Sources: o365_syn_train (detection + synthetic masks),
# o365_caption_train (referring on captions), o365_val (boxes).
o365_data_root = 'data/objects365/'
o365_lsj_size = (1024, 1024)
o365_max_texts = 100

o365_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=o365_lsj_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=o365_lsj_size, crop_type='absolute', recompute_bbox=False,
         allow_negative_crop=True),
    dict(type='ToUnifiedTargets', max_texts=o365_max_texts),
    dict(type='PackQueryMeldInputs'),
]
o365_caption_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=o365_lsj_size, ratio_range=(0.5, 1.0), keep_ratio=True),
    dict(type='ToUnifiedTargets', max_texts=o365_max_texts),
    dict(type='PackQueryMeldInputs'),
]
o365_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=o365_lsj_size, keep_ratio=True),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=False),
    dict(type='ToUnifiedTargets', test_mode=True),
    dict(type='PackQueryMeldInputs'),
]
o365_syn_train = dict(
    name='o365_syn', task='detection', ratio=1.0, pipeline=o365_train_pipeline,
    dataset=dict(type='BoxCaptionDataset', data_root=o365_data_root,
                 ann_file='annotations/zhiyuan_objv2_train.json',
                 syn_mask_file='annotations/synthetic_masks_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True)))
o365_caption_train = dict(
    name='o365_captions', task='referring', ratio=1.0, pipeline=o365_caption_pipeline,
    dataset=dict(type='BoxCaptionDataset', data_root=o365_data_root,
                 ann_file='annotations/zhiyuan_objv2_train.json',
                 syn_mask_file='annotations/synthetic_masks_train.json',
                 caption_file='annotations/synthetic_captions_train.json',
                 data_prefix=dict(img='train/'), filter_cfg=dict(filter_empty_gt=True)))
o365_val = dict(
    name='o365', task='detection', pipeline=o365_val_pipeline,
    dataset=dict(type='BoxCaptionDataset', data_root=o365_data_root,
                 ann_file='annotations/zhiyuan_objv2_val.json', data_prefix=dict(img='val/'),
                 test_mode=True))
