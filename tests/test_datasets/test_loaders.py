"""Every format, loaded from generated files through the real dataset classes and pipelines,
ends in the unified targets of docs/data_contract.md."""
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from PIL import Image
from pycocotools.coco import COCO

from mmquerymeld.datasets import MultiSourceDataset
from mmquerymeld.testing import (LVIS_CLASSES, PC_CLASS_IDS, SEMANTIC_CLASSES,
                                 STUFF_CLASSES, THING_CLASSES, pc459_classes)
from mmquerymeld.datasets.utils import masks_to_bboxes, rgb2id


def _one(src, pipeline=None):
    """A MultiSourceDataset over a single source config (optionally another pipeline)."""
    src = dict(src)
    if pipeline is not None:
        src['pipeline'] = pipeline
    return MultiSourceDataset([src])


def _check_contract(item, task, source):
    """The packed sample has the fields, types and shapes of the data contract."""
    inputs, ds = item['inputs'], item['data_samples']
    assert isinstance(inputs, torch.Tensor) and inputs.dtype == torch.uint8
    assert inputs.ndim == 3 and inputs.shape[0] == 3
    assert isinstance(ds, DetDataSample)
    assert ds.task == task and ds.source == source
    texts = ds.texts
    assert isinstance(texts, list) and all(isinstance(t, str) and t for t in texts)
    gt = ds.gt_instances
    n = len(gt.labels)
    assert isinstance(gt.masks, BitmapMasks) and len(gt.masks) == n
    assert gt.bboxes.dtype == torch.float32 and gt.bboxes.shape == (n, 4)
    assert gt.labels.dtype == torch.long and gt.mask_valid.dtype == torch.bool
    assert gt.mask_valid.shape == (n, )
    if n:
        assert 0 <= gt.labels.min() and gt.labels.max() < len(texts)
    masks = gt.masks.masks.astype(bool)
    if n:
        # mask/box agreement for instances with masks, empty masks for the others
        valid = gt.mask_valid.numpy()
        np.testing.assert_allclose(masks_to_bboxes(masks[valid]), gt.bboxes.numpy()[valid],
                                   atol=1.0)
        assert all(m.any() for m in masks[valid])
        assert not masks[~valid].any()
        assert (gt.bboxes[:, 2:] > gt.bboxes[:, :2]).all()
    return ds


def _img_shape(ds):
    return tuple(ds.img_shape)


# ---------------------------------------------------------------------------------- panoptic
def test_panoptic_eval_targets_match_png(syn_cfg, world):
    ds = _one(syn_cfg['syn_panoptic_val'])
    with open(osp.join(world, 'coco/annotations/panoptic_val2017.json')) as f:
        pan_json = json.load(f)
    pan = {a['image_id']: a for a in pan_json['annotations']}
    cats = {c['id']: c['name'] for c in pan_json['categories']}
    meta = ds.metainfo['sources']['syn_coco_panoptic']
    assert meta['thing_classes'] == list(THING_CLASSES) or \
        tuple(meta['thing_classes']) == THING_CLASSES
    assert meta['thing_flags'] == [True] * 5 + [False] * 5
    for i in range(len(ds)):
        item = ds[i]
        s = _check_contract(item, 'panoptic', 'syn_coco_panoptic')
        assert s.texts == list(THING_CLASSES + STUFF_CLASSES)
        assert s.thing_flags == [True] * 5 + [False] * 5
        ann = pan[s.img_id]
        ids = rgb2id(np.array(Image.open(osp.join(
            world, 'coco/annotations/panoptic_val2017', ann['file_name'])).convert('RGB')))
        # gt at ori_shape; one mask per segment (things per instance, stuff per class)
        assert tuple(s.gt_instances.masks.masks.shape[1:]) == ids.shape
        expected = sorted((cats[g['category_id']], g['area']) for g in ann['segments_info'])
        got = sorted((s.texts[lb], int(m.sum())) for lb, m in
                     zip(s.gt_instances.labels.tolist(), s.gt_instances.masks.masks))
        assert got == expected
        assert s.gt_instances.mask_valid.all()
        assert s.gt_sem_seg.sem_seg.shape == (1, ) + ids.shape


def test_panoptic_train_pipeline_augments(syn_cfg):
    ds = _one(syn_cfg['syn_panoptic_train'])
    assert len(ds) > 0
    shapes = set()
    for i in list(range(len(ds))) * 3:  # repeated draws: random resize / crop differ
        s = _check_contract(ds[i], 'panoptic', 'syn_coco_panoptic')
        h, w = s.gt_instances.masks.masks.shape[1:]
        assert (h, w) == _img_shape(s) and max(h, w) <= 128
        assert 'gt_sem_seg' not in s
        shapes.add((h, w))
        stuff = [s.texts[lb] for lb in s.gt_instances.labels.tolist()]
        assert any(t in STUFF_CLASSES for t in stuff)
    # the source images are square and all of one size: only RandomResize (+ crop) varies this
    assert len(shapes) > 1, shapes


# ---------------------------------------------------------------------------------- instance
def test_coco_instances_polygons_and_rle(syn_cfg, world):
    ds = _one(syn_cfg['syn_instance_val'])
    coco = COCO(osp.join(world, 'coco/annotations/instances_val2017.json'))
    for i in range(len(ds)):
        s = _check_contract(ds[i], 'instance', 'syn_coco_instance')
        assert s.texts == list(THING_CLASSES) and s.thing_flags == [True] * 5
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[s.img_id]))
        assert len(s.gt_instances) == len(anns)
        for a in anns:  # each annotation found back with its class and mask
            ref = coco.annToMask(a).astype(bool)
            ious = [(m & ref).sum() / (m | ref).sum() for m in
                    s.gt_instances.masks.masks.astype(bool)]
            j = int(np.argmax(ious))
            assert ious[j] > 0.95
            assert s.texts[int(s.gt_instances.labels[j])] == coco.cats[a['category_id']]['name']


def test_filter_empty_gt(syn_cfg, world):
    src = syn_cfg['syn_instance_train']
    kept = _one(src)
    src_keep = dict(src, dataset=dict(src['dataset'], filter_cfg=dict(filter_empty_gt=False)))
    all_ = _one(src_keep)
    assert len(all_) == len(kept) + 1  # the world's one image without things


def test_lvis_big_label_space_is_capped(syn_cfg, world):
    src = syn_cfg['syn_lvis_train']
    pipeline = [dict(type='SafeLoadImageFromFile'), dict(type='LoadQMAnnotations'),
                dict(type='ToUnifiedTargets', max_texts=8), dict(type='PackQueryMeldInputs')]
    ds = _one(src, pipeline)
    assert ds.metainfo['sources']['syn_lvis']['classes'] == list(LVIS_CLASSES) or \
        tuple(ds.metainfo['sources']['syn_lvis']['classes']) == LVIS_CLASSES
    lvis = COCO(osp.join(world, 'lvis/lvis_v1_train.json'))
    for i in range(len(ds)):
        s = _check_contract(ds[i], 'instance', 'syn_lvis')
        positives = {lvis.cats[a['category_id']]['name'].replace('_', ' ')
                     for a in lvis.loadAnns(lvis.getAnnIds(imgIds=[s.img_id]))}
        assert len(s.texts) == max(8, len(positives))
        assert positives <= set(s.texts)  # all positives, negatives fill up to the cap
        assert {s.texts[lb] for lb in s.gt_instances.labels.tolist()} == positives
        assert len(set(s.texts)) == len(s.texts)
        img = lvis.imgs[s.img_id]
        verified = {lvis.cats[c]['name'].replace('_', ' ') for c in img['neg_category_ids']}
        if len(positives) + len(verified) <= 8:
            assert verified <= set(s.texts)  # LVIS's verified negatives come first


# ---------------------------------------------------------------------------------- semantic
def test_ade_semantic_reduce_zero_label(syn_cfg, world):
    ds = _one(syn_cfg['syn_semantic_val'])
    for i in range(len(ds)):
        s = _check_contract(ds[i], 'semantic', 'syn_ade_semantic')
        raw = np.array(Image.open(osp.join(
            world, 'ade/ADEChallengeData2016/annotations/validation', f'ADE_val_{i + 1:08d}.png')))
        expected = raw.astype(np.int64) - 1
        expected[raw == 0] = 255
        seg = s.gt_sem_seg.sem_seg[0].numpy()
        np.testing.assert_array_equal(seg, expected)
        assert s.texts == list(SEMANTIC_CLASSES)
        # one mask per present class, equal to the label map's region
        present = sorted(set(np.unique(expected).tolist()) - {255})
        assert sorted(s.gt_instances.labels.tolist()) == present
        for lb, m in zip(s.gt_instances.labels.tolist(), s.gt_instances.masks.masks):
            np.testing.assert_array_equal(m.astype(bool), seg == lb)


def test_semantic_train_crops_and_samples(syn_cfg, world):
    ds = _one(syn_cfg['syn_semantic_train'])
    assert len(ds) > 0
    src_size = max(ds[0]['data_samples'].ori_shape)
    shapes = set()
    for i in list(range(len(ds))) * 3:
        s = _check_contract(ds[i], 'semantic', 'syn_ade_semantic')
        h, w = _img_shape(s)
        assert max(h, w) <= 128  # cropped to the 128 px crop size
        # RandomChoiceResize: short edge one of the config's scales (then the 128 crop)
        assert min(h, w) in {min(sc, 128) for sc in (102, 115, 128, 140, 153, 166, 179, 192)}
        assert len(s.gt_instances) >= 1
        shapes.add((h, w))
    assert len(shapes) > 1, shapes
    assert src_size < 102  # so every sample above was resized, not passed through


def test_16bit_label_maps_keep_large_ids(syn_cfg, world):
    ds = _one(syn_cfg['syn_pc459_val'])
    names = pc459_classes()
    assert len(ds.metainfo['sources']['syn_pc459']['classes']) == 300
    seen = set()
    for i in range(len(ds)):
        s = _check_contract(ds[i], 'semantic', 'syn_pc459')
        seg = s.gt_sem_seg.sem_seg[0].numpy()
        assert s.gt_sem_seg.ignore_index == 65535 and s.seg_ignore_index == 65535
        assert (seg[:2] == 65535).all()
        vals = set(np.unique(seg).tolist()) - {65535}
        assert vals <= set(PC_CLASS_IDS)
        seen |= vals
        assert {s.texts[lb] for lb in s.gt_instances.labels.tolist()} <= set(SEMANTIC_CLASSES)
        assert len(s.texts) == len(names)
    assert max(seen) > 255  # mmseg's uint8 cast would have wrapped these


# --------------------------------------------------------------------------------- referring
def test_refcoco_one_random_expression_per_mask(syn_cfg, world):
    ds = _one(syn_cfg['syn_referring_train'])
    with open(osp.join(world, 'refcoco', 'refs(unc).p'), 'rb') as f:
        refs = [r for r in pickle.load(f) if r['split'] == 'train']
    sents = {}
    for r in refs:
        sents.setdefault(r['image_id'], []).append({x['sent'] for x in r['sentences']})
    s = _check_contract(ds[0], 'referring', 'syn_refcoco')
    n_refs = len(sents[s.img_id])
    assert len(s.texts) == len(s.gt_instances) == n_refs
    assert s.gt_instances.labels.tolist() == list(range(n_refs))
    seen = set()
    for _ in range(12):
        s = ds[0]['data_samples']
        for t in s.texts:
            assert any(t in group for group in sents[s.img_id])
        seen.add(s.texts[0])
    assert len(seen) > 1, 'a new expression is sampled every iteration'


def test_refcoco_eval_expands_sentences_and_splits(syn_cfg, world):
    ds = _one(syn_cfg['syn_referring_val'])
    with open(osp.join(world, 'refcoco', 'refs(unc).p'), 'rb') as f:
        refs = [r for r in pickle.load(f) if r['split'] == 'val']
    total = sum(len(r['sentences']) for r in refs)
    got = 0
    for i in range(len(ds)):
        s = _check_contract(ds[i], 'referring', 'syn_refcoco')
        got += len(s.texts)
        assert s.gt_instances.labels.tolist() == list(range(len(s.texts)))
    assert got == total
    for folder, split_by, split in (('refcocog', 'umd', 'test'), ('refcocog', 'google', 'val'),
                                    ('refcoco+', 'unc', 'testB')):
        src = dict(syn_cfg['syn_referring_val'])
        src['dataset'] = dict(src['dataset'], ann_file=f'{folder}/instances.json',
                              split_by=split_by, split=split)
        d = _one(src)
        assert len(d) >= 1
        _check_contract(d[0], 'referring', 'syn_refcoco')
    src['dataset'] = dict(src['dataset'], split_by='google', split='testA')
    with pytest.raises(ValueError, match='testA'):
        _one(src)


# -------------------------------------------------------------------------------- foreground
@pytest.mark.parametrize('layout,split', [('DUTS', 'test'), ('DIS5K', 'val'),
                                          ('HRSOD', 'test')])
def test_foreground_layouts(syn_cfg, world, layout, split):
    src = dict(syn_cfg['syn_foreground_val'])
    src['dataset'] = dict(src['dataset'], data_root=osp.join(world, 'salient', layout),
                          layout=layout, split=split)
    ds = _one(src)
    assert len(ds) == 4
    s = _check_contract(ds[0], 'foreground', 'syn_duts')
    assert s.texts == ['foreground'] and len(s.gt_instances) == 1
    seg = s.gt_sem_seg.sem_seg[0].numpy()
    raw = np.array(Image.open(s.img_path.replace('.jpg', '.png').replace(
        *{'DUTS': ('Image', 'Mask'), 'DIS5K': ('/im/', '/gt/'),
          'HRSOD': ('HRSOD_test', 'HRSOD_test_mask')}[layout])))
    np.testing.assert_array_equal(seg, (raw >= 128).astype(np.int64))
    np.testing.assert_array_equal(s.gt_instances.masks.masks[0], seg)


def test_foreground_train(syn_cfg):
    ds = _one(syn_cfg['syn_foreground_train'])
    s = _check_contract(ds[1], 'foreground', 'syn_duts')
    assert _img_shape(s) == (128, 128) and len(s.gt_instances) == 1


# ------------------------------------------------------------------------ box-only detection
def test_box_only_with_synthetic_masks(syn_cfg, world):
    src = syn_cfg['syn_detection_train']
    pipeline = [dict(type='SafeLoadImageFromFile'), dict(type='LoadQMAnnotations'),
                dict(type='ToUnifiedTargets'), dict(type='PackQueryMeldInputs')]
    ds = _one(src, pipeline)
    boxes = COCO(osp.join(world, 'detection/annotations/boxes_train.json'))
    with open(osp.join(world, 'detection/annotations/synthetic_masks_train.json')) as f:
        with_mask = {a['id'] for a in json.load(f)['annotations']}
    flags = []
    for i in range(len(ds)):
        s = _check_contract(ds[i], 'detection', 'syn_o365_boxes')
        anns = boxes.loadAnns(boxes.getAnnIds(imgIds=[s.img_id]))
        assert len(s.gt_instances) == len(anns)
        got = sorted(zip(s.gt_instances.bboxes.round().tolist(),
                         s.gt_instances.mask_valid.tolist()))
        exp = sorted(([round(v) for v in (a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
                                          a['bbox'][1] + a['bbox'][3])], a['id'] in with_mask)
                     for a in anns)
        assert got == exp
        flags += s.gt_instances.mask_valid.tolist()
    assert any(flags) and not all(flags), 'both synthetic-mask and box-only instances'
    # the augmented pipeline keeps the no-mask flag aligned through flips and crops
    aug = _one(src)
    for i in range(len(aug)):
        _check_contract(aug[i], 'detection', 'syn_o365_boxes')


def test_box_only_eval_without_masks(syn_cfg):
    ds = _one(syn_cfg['syn_detection_val'])
    s = _check_contract(ds[0], 'detection', 'syn_o365_boxes')
    assert not s.gt_instances.mask_valid.any()
    assert tuple(s.gt_instances.masks.masks.shape[1:]) == tuple(s.ori_shape)


def test_synthetic_captions_as_referring(syn_cfg, world):
    ds = _one(syn_cfg['syn_caption_train'])
    with open(osp.join(world, 'detection/annotations/synthetic_captions_train.json')) as f:
        caps = [set(a['captions']) for a in json.load(f)['annotations']]
    assert all(len(c) == 5 for c in caps)
    all_caps = set().union(*caps)
    s = _check_contract(ds[0], 'referring', 'syn_o365_captions')
    assert len(s.texts) == len(s.gt_instances) >= 1
    assert set(s.texts) <= all_caps
