# The synthetic world (tools/dataset_converters/make_synthetic_world.py --out data/synthetic):
# every format QueryMeldNet reads, tiny 128 px images, for the CPU demo and the tests.
# One MultiSourceDataset source per dataset/task, each with its own pipeline (appendix A.2:
# dataset-aware augmentation) and a sampling ratio honoured by MultiSourceRatioSampler.
data_root = 'data/synthetic/'
backend_args = None
syn_scale = (128, 128)
syn_max_texts = 16  # vocabulary cap of class-based samples (positives + sampled negatives)

syn_semantic_classes = ('circle', 'square', 'triangle', 'star', 'cross', 'sky', 'grass', 'water',
                        'sand', 'wall')

# ------------------------------------------------------------------------------ train pipelines
syn_panoptic_train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadCocoPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args=backend_args),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=syn_scale, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=syn_scale, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='ToUnifiedTargets', max_texts=syn_max_texts),
    dict(type='PackQueryMeldInputs'),
]
syn_instance_train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=syn_scale, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=syn_scale, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='ToUnifiedTargets', max_texts=syn_max_texts),
    dict(type='PackQueryMeldInputs'),
]
# ADE-style: random short-edge scales, crops that limit the largest class (cat_max_ratio)
syn_semantic_train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadSemSegAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='RandomChoiceResize', scales=[int(128 * x * 0.1) for x in range(8, 16)],
         resize_type='mmseg.ResizeShortestEdge', max_size=512),
    dict(type='mmseg.RandomCrop', crop_size=syn_scale, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='ToUnifiedTargets', max_texts=syn_max_texts),
    dict(type='PackQueryMeldInputs'),
]
# referring: instance augmentation without random crops (appendix A.2) and without flips
# (the expressions say "left" / "right")
syn_referring_train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=syn_scale, ratio_range=(0.75, 1.0), keep_ratio=True),
    dict(type='ToUnifiedTargets', max_texts=syn_max_texts),
    dict(type='PackQueryMeldInputs'),
]
# foreground: InSPyReNet-style (fixed-size resize, flip, small rotation, colour jitter)
syn_foreground_train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadSemSegAnnotations', binarize=True),
    dict(type='Resize', scale=syn_scale, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmseg.RandomRotate', prob=0.5, degree=10, pad_val=0, seg_pad_val=0),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='ToUnifiedTargets'),
    dict(type='PackQueryMeldInputs'),
]
# box-only detection with synthetic masks: boxes are not recomputed from (possibly absent) masks
syn_detection_train_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=syn_scale, ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=syn_scale, crop_type='absolute', recompute_bbox=False,
         allow_negative_crop=True),
    dict(type='ToUnifiedTargets', max_texts=syn_max_texts),
    dict(type='PackQueryMeldInputs'),
]

# ------------------------------------------------------------------------------- train sources
syn_panoptic_train = dict(
    name='syn_coco_panoptic', task='panoptic', ratio=2.0, pipeline=syn_panoptic_train_pipeline,
    dataset=dict(type='QMCocoPanopticDataset', data_root=data_root,
                 ann_file='coco/annotations/panoptic_train2017.json',
                 data_prefix=dict(img='coco/train2017/',
                                  seg='coco/annotations/panoptic_train2017/'),
                 filter_cfg=dict(filter_empty_gt=False), backend_args=backend_args))
syn_instance_train = dict(
    name='syn_coco_instance', task='instance', ratio=1.0, pipeline=syn_instance_train_pipeline,
    dataset=dict(type='QMCocoDataset', data_root=data_root,
                 ann_file='coco/annotations/instances_train2017.json',
                 data_prefix=dict(img='coco/train2017/'),
                 filter_cfg=dict(filter_empty_gt=True), backend_args=backend_args))
syn_lvis_train = dict(  # not in the default mixture; the LVIS-style 30-class vocabulary
    name='syn_lvis', task='instance', ratio=1.0, pipeline=syn_instance_train_pipeline,
    dataset=dict(type='QMLVISDataset', data_root=data_root, ann_file='lvis/lvis_v1_train.json',
                 data_prefix=dict(img='coco/'), filter_cfg=dict(filter_empty_gt=True),
                 backend_args=backend_args))
syn_semantic_train = dict(
    name='syn_ade_semantic', task='semantic', ratio=2.0, pipeline=syn_semantic_train_pipeline,
    dataset=dict(type='SemSegFolderDataset', data_root=data_root,
                 metainfo=dict(classes=syn_semantic_classes), reduce_zero_label=True,
                 data_prefix=dict(img_path='ade/ADEChallengeData2016/images/training',
                                  seg_map_path='ade/ADEChallengeData2016/annotations/training'),
                 backend_args=backend_args))
syn_referring_train = dict(
    name='syn_refcoco', task='referring', ratio=2.0, pipeline=syn_referring_train_pipeline,
    dataset=dict(type='QMRefCocoDataset', data_root=data_root, ann_file='refcoco/instances.json',
                 split_by='unc', split='train', data_prefix=dict(img_path='coco/train2014/')))
syn_foreground_train = dict(
    name='syn_duts', task='foreground', ratio=1.0, pipeline=syn_foreground_train_pipeline,
    dataset=dict(type='SalientFolderDataset', data_root=data_root + 'salient/DUTS',
                 layout='DUTS', split='train'))
syn_detection_train = dict(
    name='syn_o365_boxes', task='detection', ratio=1.0, pipeline=syn_detection_train_pipeline,
    dataset=dict(type='BoxCaptionDataset', data_root=data_root,
                 ann_file='detection/annotations/boxes_train.json',
                 syn_mask_file='detection/annotations/synthetic_masks_train.json',
                 data_prefix=dict(img='detection/images/train/'),
                 filter_cfg=dict(filter_empty_gt=True), backend_args=backend_args))
syn_caption_train = dict(
    name='syn_o365_captions', task='referring', ratio=1.0,
    pipeline=syn_referring_train_pipeline,
    dataset=dict(type='BoxCaptionDataset', data_root=data_root,
                 ann_file='detection/annotations/boxes_train.json',
                 syn_mask_file='detection/annotations/synthetic_masks_train.json',
                 caption_file='detection/annotations/synthetic_captions_train.json',
                 data_prefix=dict(img='detection/images/train/'),
                 filter_cfg=dict(filter_empty_gt=True), backend_args=backend_args))

# ------------------------------------------------------------------------------- eval pipelines
# Resize the image, then load the annotations: ground truth stays at ori_shape (mmdet convention).
syn_eval_meta_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'task',
                      'texts', 'source', 'thing_flags', 'seg_ignore_index')
syn_panoptic_val_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=syn_scale, keep_ratio=True),
    dict(type='LoadCocoPanopticAnnotations', backend_args=backend_args),
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs',
         meta_keys=syn_eval_meta_keys + ('seg_map_path', 'segments_info')),
]
syn_instance_val_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=syn_scale, keep_ratio=True),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='ToUnifiedTargets', test_mode=True),
    dict(type='PackQueryMeldInputs', meta_keys=syn_eval_meta_keys),
]
syn_semantic_val_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=syn_scale, keep_ratio=True),
    dict(type='LoadSemSegAnnotations'),
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs', meta_keys=syn_eval_meta_keys),
]
syn_referring_val_pipeline = syn_instance_val_pipeline
syn_foreground_val_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=syn_scale, keep_ratio=False),
    dict(type='LoadSemSegAnnotations', binarize=True),
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs', meta_keys=syn_eval_meta_keys),
]
syn_detection_val_pipeline = [
    dict(type='SafeLoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=syn_scale, keep_ratio=True),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=False),
    dict(type='ToUnifiedTargets', test_mode=True),
    dict(type='PackQueryMeldInputs', meta_keys=syn_eval_meta_keys),
]

# --------------------------------------------------------------------------------- val sources
syn_panoptic_val = dict(
    name='syn_coco_panoptic', task='panoptic', pipeline=syn_panoptic_val_pipeline,
    dataset=dict(type='QMCocoPanopticDataset', data_root=data_root,
                 ann_file='coco/annotations/panoptic_val2017.json',
                 data_prefix=dict(img='coco/val2017/', seg='coco/annotations/panoptic_val2017/'),
                 test_mode=True, backend_args=backend_args))
syn_instance_val = dict(
    name='syn_coco_instance', task='instance', pipeline=syn_instance_val_pipeline,
    dataset=dict(type='QMCocoDataset', data_root=data_root,
                 ann_file='coco/annotations/instances_val2017.json',
                 data_prefix=dict(img='coco/val2017/'), test_mode=True,
                 backend_args=backend_args))
syn_semantic_val = dict(
    name='syn_ade_semantic', task='semantic', pipeline=syn_semantic_val_pipeline,
    dataset=dict(type='SemSegFolderDataset', data_root=data_root,
                 metainfo=dict(classes=syn_semantic_classes), reduce_zero_label=True,
                 data_prefix=dict(img_path='ade/ADEChallengeData2016/images/validation',
                                  seg_map_path='ade/ADEChallengeData2016/annotations/validation'),
                 test_mode=True, backend_args=backend_args))
syn_pc459_val = dict(  # 16-bit label maps over 300 classes (ignore 65535); not in the default set
    name='syn_pc459', task='semantic', pipeline=syn_semantic_val_pipeline,
    dataset=dict(type='SemSegFolderDataset', data_root=data_root + 'pc459/',
                 classes_file='classes.txt',
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations_459/validation'),
                 test_mode=True, backend_args=backend_args))
syn_referring_val = dict(
    name='syn_refcoco', task='referring', pipeline=syn_referring_val_pipeline,
    dataset=dict(type='QMRefCocoDataset', data_root=data_root, ann_file='refcoco/instances.json',
                 split_by='unc', split='val', data_prefix=dict(img_path='coco/train2014/'),
                 test_mode=True))
syn_foreground_val = dict(
    name='syn_duts', task='foreground', pipeline=syn_foreground_val_pipeline,
    dataset=dict(type='SalientFolderDataset', data_root=data_root + 'salient/DUTS',
                 layout='DUTS', split='test', test_mode=True))
syn_detection_val = dict(
    name='syn_o365_boxes', task='detection', pipeline=syn_detection_val_pipeline,
    dataset=dict(type='BoxCaptionDataset', data_root=data_root,
                 ann_file='detection/annotations/boxes_val.json',
                 data_prefix=dict(img='detection/images/val/'), test_mode=True,
                 backend_args=backend_args))

# --------------------------------------------------------------------------------- dataloaders
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='MultiSourceRatioSampler', ratio_mode='share', shuffle=True),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[
            syn_panoptic_train, syn_instance_train, syn_semantic_train, syn_referring_train,
            syn_foreground_train, syn_detection_train, syn_caption_train
        ]))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='MultiSourceDataset',
        sources=[
            syn_panoptic_val, syn_instance_val, syn_semantic_val, syn_referring_val,
            syn_foreground_val, syn_detection_val
        ]))
test_dataloader = val_dataloader
