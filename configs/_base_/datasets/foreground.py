# Foreground / salient segmentation folders (DUTS, DIS5K, HRSOD layouts), InSPyReNet-style
# augmentation (appendix A.2): fixed-size resize, flip, small rotation, colour jitter.
# Sources: duts_train, dis5k_train, hrsod_train, duts_val, dis5k_val, hrsod_val.
fg_data_root = 'data/foreground/'
fg_size = (384, 384)

foreground_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadSemSegAnnotations', binarize=True),
    dict(type='Resize', scale=fg_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='mmseg.RandomRotate', prob=0.5, degree=10, pad_val=0, seg_pad_val=0),
    dict(type='mmseg.PhotoMetricDistortion'),
    dict(type='ToUnifiedTargets'),
    dict(type='PackQueryMeldInputs'),
]
foreground_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=fg_size, keep_ratio=False),
    dict(type='LoadSemSegAnnotations', binarize=True),
    dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
    dict(type='PackQueryMeldInputs'),
]


def _fg(name, layout, split, test_mode=False):
    return dict(
        name=name, task='foreground', ratio=9.0,
        pipeline=foreground_val_pipeline if test_mode else foreground_train_pipeline,
        dataset=dict(type='SalientFolderDataset', data_root=fg_data_root + layout,
                     layout=layout, split=split, test_mode=test_mode))


duts_train = _fg('duts', 'DUTS', 'train')
dis5k_train = _fg('dis5k', 'DIS5K', 'train')
hrsod_train = _fg('hrsod', 'HRSOD', 'train')
duts_val = _fg('duts_te', 'DUTS', 'test', True)
dis5k_val = _fg('dis5k_vd', 'DIS5K', 'val', True)
hrsod_val = _fg('hrsod_test', 'HRSOD', 'test', True)
del _fg
