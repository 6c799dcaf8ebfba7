# LVIS v1 instances (1203 classes, images of COCO 2017; read without the lvis package).
# Big label space: every positive class plus sampled negatives up to lvis_max_texts.
# Sources: lvis_train, lvis_val.
lvis_data_root = 'data/lvis_v1/'
lvis_lsj_size = (1024, 1024)
lvis_max_texts = 100

lvis_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=lvis_lsj_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=lvis_lsj_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='ToUnifiedTargets', max_texts=lvis_max_texts),
    dict(type='PackQueryMeldInputs'),
]
lvis_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=lvis_lsj_size, keep_ratio=True),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='ToUnifiedTargets', test_mode=True),
    dict(type='PackQueryMeldInputs'),
]
lvis_train = dict(
    name='lvis', task='instance', ratio=3.0, pipeline=lvis_train_pipeline,
    dataset=dict(type='QMLVISDataset', data_root=lvis_data_root,
                 ann_file='annotations/lvis_v1_train.json',  # cleaned of RefCOCO val images
                 data_prefix=dict(img=''),  # file names "train2017/xxx.jpg" from coco_url
                 filter_cfg=dict(filter_empty_gt=True, min_size=32)))
lvis_val = dict(
    name='lvis', task='instance', pipeline=lvis_val_pipeline,
    dataset=dict(type='QMLVISDataset', data_root=lvis_data_root,
                 ann_file='annotations/lvis_v1_val.json', data_prefix=dict(img=''),
                 test_mode=True))
