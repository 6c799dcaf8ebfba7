# ADE20K semantic (150 classes, reduce_zero_label) with 512 crops, as Mask DINO / Mask2Former's
# ADE recipe: random short-edge scale in [256, 1024], 512x512 crop (cat_max_ratio 0.75), flip,
# photometric distortion. Sources: ade_semantic_train, ade_semantic_val.
ade_data_root = 'data/ade/ADEChallengeData2016/'
ade_crop_size = (512, 512)

ade_semantic_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadSemSegAnnotations'),  # reduce_zero_label from mmseg's ADE20KDataset
    dict(type='RandomChoiceResize', scales=[int(512 * x * 0.1) for x in range(5, 21)],
         resize_type='mmseg.ResizeShortestEdge', max_size=2048),
    dict(type='mmseg.RandomCrop', crop_size=ade_crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='ToUnifiedTargets'),
    dict(type='PackQueryMeldInputs'),
]
ade_semantic_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadSemSegAnnotations'),
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs'),
]
ade_semantic_train = dict(
    name='ade_semantic', task='semantic', ratio=30.0, pipeline=ade_semantic_train_pipeline,
    dataset=dict(type='mmseg.ADE20KDataset', data_root=ade_data_root,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training')))
ade_semantic_val = dict(
    name='ade_semantic', task='semantic', pipeline=ade_semantic_val_pipeline,
    dataset=dict(type='mmseg.ADE20KDataset', data_root=ade_data_root,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation'),
                 test_mode=True))
