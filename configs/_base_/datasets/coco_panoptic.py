# COCO panoptic 2017 (PNG + JSON, read without panopticapi) with large-scale jitter (LSJ), as
# Mask DINO's panoptic recipe (appendix A.2). Provides sources for MultiSourceDataset:
# coco_panoptic_train / coco_panoptic_val (combine them in a config's dataloaders).
coco_data_root = 'data/coco/'
coco_lsj_size = (1024, 1024)

coco_panoptic_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadCocoPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=coco_lsj_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=coco_lsj_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='ToUnifiedTargets'),  # 133 classes: the whole vocabulary every time
    dict(type='PackQueryMeldInputs'),
]
coco_panoptic_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=coco_lsj_size, keep_ratio=True),
    dict(type='LoadCocoPanopticAnnotations', with_crowd=True),  # crowd regions for PQ
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'task',
                    'texts', 'source', 'thing_flags', 'seg_ignore_index', 'seg_map_path',
                    'segments_info')),
]
coco_panoptic_train = dict(
    name='coco_panoptic', task='panoptic', ratio=3.0, pipeline=coco_panoptic_train_pipeline,
    dataset=dict(type='QMCocoPanopticDataset', data_root=coco_data_root,
                 # after tools/dataset_converters/remove_refcoco_leakage.py, point this at
                 # the cleaned copy (appendix A.2 leakage rule)
                 ann_file='annotations/panoptic_train2017.json',
                 data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32)))
coco_panoptic_val = dict(
    name='coco_panoptic', task='panoptic', pipeline=coco_panoptic_val_pipeline,
    dataset=dict(type='QMCocoPanopticDataset', data_root=coco_data_root,
                 ann_file='annotations/panoptic_val2017.json',
                 data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
                 test_mode=True))
