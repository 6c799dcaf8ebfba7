# Pascal Context 459 (zero-shot evaluation, section 4.3): 16-bit label maps (mmseg's loader
# would cast them to uint8), 65535 = ignore. Convert the .tif/.mat maps of the public release to
# 16-bit PNGs in annotations_459/ and list the 459 names, one per line, in classes_459.txt.
# Source: pc459_val.
pc459_data_root = 'data/pcontext/'
pc459_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadSemSegAnnotations'),
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs'),
]
pc459_val = dict(
    name='pc459', task='semantic', pipeline=pc459_val_pipeline,
    dataset=dict(type='SemSegFolderDataset', data_root=pc459_data_root,
                 classes_file='classes_459.txt',
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations_459/validation'),
                 seg_map_suffix='.png', test_mode=True))
