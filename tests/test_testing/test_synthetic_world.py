"""The synthetic world: speed, determinism, and files that open like the public datasets."""
import glob
import hashlib
import os
import os.path as osp
import pickle
import subprocess
import sys
import time

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from mmquerymeld.testing import (LVIS_CLASSES, PC_CLASS_IDS, STUFF_CLASSES,
                                 THING_CLASSES, generate_synthetic_world)
from mmquerymeld.datasets.utils import rgb2id

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SMALL = dict(seed=0, num_train=6, num_val=4, img_size=96)


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(glob.glob(osp.join(root, '**', '*'), recursive=True)):
        if osp.isfile(path) and not path.endswith('world_info.json'):
            h.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def test_default_world_is_fast_and_complete(tmp_path):
    t0 = time.time()
    info = generate_synthetic_world(str(tmp_path))  # the default: 24 train / 8 val, 128 px
    elapsed = time.time() - t0
    assert elapsed < 60, f'generation took {elapsed:.1f}s'
    assert info['num_train'] == 24 and info['img_size'] == 128
    coco = COCO(str(tmp_path / 'coco/annotations/instances_train2017.json'))
    assert len(coco.getImgIds()) == 24
    # the last train image has no things (kept or filtered by filter_cfg)
    assert len(coco.getAnnIds(imgIds=[info['coco_image_ids']['train'][-1]])) == 0
    assert len(glob.glob(str(tmp_path / 'ade/ADEChallengeData2016/images/training/*.jpg'))) == 24
    assert len(glob.glob(str(tmp_path / 'salient/DUTS/DUTS-TE/DUTS-TE-Mask/*.png'))) == 8


def test_deterministic_by_seed(tmp_path):
    small = dict(SMALL, num_train=2, num_val=1, img_size=48)
    generate_synthetic_world(str(tmp_path / 'a'), **small)
    generate_synthetic_world(str(tmp_path / 'b'), **small)
    generate_synthetic_world(str(tmp_path / 'c'), **dict(small, seed=1))
    assert _digest(str(tmp_path / 'a')) == _digest(str(tmp_path / 'b'))
    assert _digest(str(tmp_path / 'a')) != _digest(str(tmp_path / 'c'))


def test_coco_files_open_with_pycocotools(world):
    val = COCO(osp.join(world, 'coco/annotations/instances_val2017.json'))
    train = COCO(osp.join(world, 'coco/annotations/instances_train2017.json'))
    assert [c['name'] for c in val.loadCats(val.getCatIds())] == list(THING_CLASSES)
    for coco in (train, val):
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns
        for a in anns:  # polygons and RLE both decode, areas agree with the JSON
            m = coco.annToMask(a)
            img = coco.imgs[a['image_id']]
            assert m.shape == (img['height'], img['width'])
            assert abs(int(m.sum()) - a['area']) <= 0.25 * a['area'] + 8
    kinds = {type(a['segmentation']) for a in train.loadAnns(train.getAnnIds())}
    assert kinds == {list, dict}, 'polygons and RLE'
    img = val.loadImgs(val.getImgIds()[0])[0]
    with Image.open(osp.join(world, 'coco/val2017', img['file_name'])) as im:
        assert im.format == 'JPEG' and im.mode == 'RGB'
        assert im.size == (img['width'], img['height'])
    lvis = COCO(osp.join(world, 'lvis/lvis_v1_train.json'))
    assert len(lvis.cats) == len(LVIS_CLASSES)
    assert all('coco_url' in i and 'neg_category_ids' in i for i in lvis.imgs.values())


def test_panoptic_png_matches_json(world):
    import json
    with open(osp.join(world, 'coco/annotations/panoptic_val2017.json')) as f:
        pan = json.load(f)
    cats = {c['id']: c for c in pan['categories']}
    assert {c['name'] for c in cats.values() if not c['isthing']} == set(STUFF_CLASSES)
    for ann in pan['annotations']:
        with Image.open(osp.join(world, 'coco/annotations/panoptic_val2017',
                                 ann['file_name'])) as im:
            assert im.mode == 'RGB'
            ids = rgb2id(np.array(im))
        for seg in ann['segments_info']:
            assert (ids == seg['id']).sum() == seg['area']
        assert set(np.unique(ids).tolist()) == {s['id'] for s in ann['segments_info']}


def test_semantic_and_16bit_maps(world):
    ade = sorted(glob.glob(osp.join(world, 'ade/ADEChallengeData2016/annotations/validation/*')))
    with Image.open(ade[0]) as im:
        assert im.mode == 'L'
        a = np.array(im)
    assert (a[:2] == 0).all() and a.max() <= len(THING_CLASSES) + len(STUFF_CLASSES)
    pc = sorted(glob.glob(osp.join(world, 'pc459/annotations_459/validation/*.png')))
    with Image.open(pc[0]) as im:
        assert im.mode.startswith('I')  # 16-bit
        p = np.array(im)
    assert (p[:2] == 65535).all()
    assert set(np.unique(p[2:]).tolist()) <= set(PC_CLASS_IDS)
    assert p[2:].max() > 255


def test_refs_pickle_and_salient_layouts(world):
    with open(osp.join(world, 'refcoco', 'refs(unc).p'), 'rb') as f:
        refs = pickle.load(f)
    assert {r['split'] for r in refs} == {'train', 'val', 'testA', 'testB'}
    r = refs[0]
    assert set(r) >= {'ref_id', 'ann_id', 'image_id', 'split', 'sentences', 'sent_ids'}
    assert all({'raw', 'sent', 'tokens', 'sent_id'} <= set(s) for s in r['sentences'])
    by_image = {}
    for ref in refs:  # expressions are unambiguous inside an image
        for sent in ref['sentences']:
            by_image.setdefault(ref['image_id'], []).append(sent['sent'])
    assert all(len(v) == len(set(v)) for v in by_image.values())
    assert any('left' in x or 'right' in x for v in by_image.values() for x in v)
    with open(osp.join(world, 'refcocog', 'refs(google).p'), 'rb') as f:
        assert {r['split'] for r in pickle.load(f)} == {'train', 'val'}
    for sub in ('DUTS/DUTS-TR/DUTS-TR-Mask', 'DIS5K/DIS-VD/gt', 'HRSOD/HRSOD_test_mask'):
        masks = sorted(glob.glob(osp.join(world, 'salient', sub, '*.png')))
        assert masks
        with Image.open(masks[0]) as im:
            assert set(np.unique(np.array(im)).tolist()) == {0, 255}


def test_cli_writes_the_world(tmp_path):
    out = tmp_path / 'w'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/dataset_converters/make_synthetic_world.py'),
         '--out', str(out), '--seed', '3', '--num-train', '2', '--num-val', '1',
         '--img-size', '48'], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert osp.isfile(out / 'detection/annotations/synthetic_captions_val.json')
    assert 'synthetic world written' in proc.stdout
    assert os.listdir(out / 'coco/train2014')
