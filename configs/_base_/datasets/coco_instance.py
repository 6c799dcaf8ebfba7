# COCO instances 2017 (polygons and RLE) with large-scale jitter. Sources: coco_instance_train,
# coco_instance_val.
coco_ins_data_root = 'data/coco/'
coco_ins_lsj_size = (1024, 1024)

coco_instance_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=coco_ins_lsj_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=coco_ins_lsj_size, crop_type='absolute',
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='ToUnifiedTargets'),
    dict(type='PackQueryMeldInputs'),
]
coco_instance_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=coco_ins_lsj_size, keep_ratio=True),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='ToUnifiedTargets', test_mode=True),
    dict(type='PackQueryMeldInputs'),
]
coco_instance_train = dict(
    name='coco_instance', task='instance', ratio=3.0, pipeline=coco_instance_train_pipeline,
    dataset=dict(type='QMCocoDataset', data_root=coco_ins_data_root,
                 ann_file='annotations/instances_train2017.json',
                 data_prefix=dict(img='train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32)))
coco_instance_val = dict(
    name='coco_instance', task='instance', pipeline=coco_instance_val_pipeline,
    dataset=dict(type='QMCocoDataset', data_root=coco_ins_data_root,
                 ann_file='annotations/instances_val2017.json',
                 data_prefix=dict(img='val2017/'), test_mode=True))
