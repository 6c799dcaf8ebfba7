# RefCOCO (unc), RefCOCO+ (unc), RefCOCOg (umd): refs pickle + instances.json, images of COCO
# train2014. Augmentation as instance segmentation without random crops (appendix A.2), and
# without flips (expressions say "left"/"right"). One random expression per mask per iteration.
# Sources: refcoco_train, refcocop_train, refcocog_train, refcoco_val, refcocop_val,
# refcocog_val (and testA/testB variants by changing `split`).
ref_data_root = 'data/coco/'
ref_scale = (1024, 1024)

referring_train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=ref_scale, ratio_range=(0.5, 1.0), keep_ratio=True),
    dict(type='ToUnifiedTargets'),
    dict(type='PackQueryMeldInputs'),
]
referring_val_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=ref_scale, keep_ratio=True),
    dict(type='LoadQMAnnotations', with_bbox=True, with_mask=True),
    dict(type='ToUnifiedTargets', test_mode=True),  # every sentence is its own instance
    dict(type='PackQueryMeldInputs'),
]


def _ref(name, folder, split_by, split, test_mode=False):
    return dict(
        name=name, task='referring', ratio=6.0,
        pipeline=referring_val_pipeline if test_mode else referring_train_pipeline,
        dataset=dict(type='QMRefCocoDataset', data_root=ref_data_root,
                     ann_file=f'{folder}/instances.json', split_by=split_by, split=split,
                     data_prefix=dict(img_path='train2014/'), test_mode=test_mode))


# train refs on COCO val2017 images must be removed first (remove_refcoco_leakage.py --coco-val)
refcoco_train = _ref('refcoco', 'refcoco', 'unc', 'train')
refcocop_train = _ref('refcoco+', 'refcoco+', 'unc', 'train')
refcocog_train = _ref('refcocog', 'refcocog', 'umd', 'train')
refcoco_val = _ref('refcoco_val', 'refcoco', 'unc', 'val', True)
refcocop_val = _ref('refcoco+_val', 'refcoco+', 'unc', 'val', True)
refcocog_val = _ref('refcocog_val', 'refcocog', 'umd', 'val', True)
del _ref
