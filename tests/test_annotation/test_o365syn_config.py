"""configs/querymeld/querymeld_r50_meld_o365syn.py: the meld config plus the data engine's
outputs as sources; it parses, and its training datasets build on a generated world laid out as
the config's data roots expect."""
import copy
import json
import os
import os.path as osp
import shutil

import pytest
from mmengine.config import Config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CFG = osp.join(REPO, 'configs', 'querymeld', 'querymeld_r50_meld_o365syn.py')
MELD = osp.join(REPO, 'configs', 'querymeld', 'querymeld_r50_meld.py')


@pytest.fixture(scope='module')
def cfg():
    return Config.fromfile(CFG)


def test_adds_engine_sources_to_the_meld_config(cfg):
    meld = Config.fromfile(MELD)
    assert cfg.model.to_dict() == meld.model.to_dict()  # only the data differ
    sources = cfg.train_dataloader.dataset.sources
    assert [(s.name, s.task) for s in sources] == [
        ('coco_panoptic', 'panoptic'), ('ade_semantic', 'semantic'),
        ('o365_engine', 'detection'), ('o365_engine_captions', 'referring')]
    assert [s.to_dict() for s in sources[:2]] == \
        [s.to_dict() for s in meld.train_dataloader.dataset.sources]
    det, ref = sources[2].dataset, sources[3].dataset
    assert det.type == ref.type == 'BoxCaptionDataset'
    assert det.ann_file == ref.ann_file == cfg.o365_engine_boxes
    assert det.syn_mask_file == ref.syn_mask_file == 'annotations/engine/masks_train.json'
    assert 'caption_file' not in det
    assert ref.caption_file == 'annotations/engine/captions_filtered_train.json'
    assert ref.require_captions is True
    # referring on captions: no crop, no flip (the captions say left / right)
    assert not {'RandomCrop', 'RandomFlip'} & {t.type for t in sources[3].pipeline}
    # box-only detection: boxes are not recomputed from (possibly absent) masks
    crop = [t for t in sources[2].pipeline if t.type == 'RandomCrop']
    assert crop and crop[0].recompute_bbox is False
    assert cfg.val_dataloader.to_dict() == meld.val_dataloader.to_dict()


def _engine_root(world: str, dst: str) -> str:
    """Objects365 layout (config paths) filled from the world's box-only split; the world's
    synthetic masks / captions stand in for box2mask / filter_captions output."""
    det = osp.join(world, 'detection')
    os.makedirs(osp.join(dst, 'annotations', 'engine'))
    shutil.copy(osp.join(det, 'annotations', 'boxes_train.json'),
                osp.join(dst, 'annotations', 'zhiyuan_objv2_train.json'))
    shutil.copy(osp.join(det, 'annotations', 'synthetic_masks_train.json'),
                osp.join(dst, 'annotations', 'engine', 'masks_train.json'))
    shutil.copy(osp.join(det, 'annotations', 'synthetic_captions_train.json'),
                osp.join(dst, 'annotations', 'engine', 'captions_filtered_train.json'))
    os.symlink(osp.join(det, 'images', 'train'), osp.join(dst, 'train'))
    return dst + '/'


def test_datasets_build_on_a_generated_world(cfg, annotation_world, tmp_path):
    import mmdet.datasets  # noqa: F401
    import mmseg.datasets  # noqa: F401
    from mmdet.registry import DATASETS

    import mmquerymeld.datasets  # noqa: F401
    world = annotation_world['root']
    roots = {'data/coco/': osp.join(world, 'coco') + '/',
             'data/ade/ADEChallengeData2016/': osp.join(world, 'ade', 'ADEChallengeData2016') + '/',
             'data/objects365/': _engine_root(world, str(tmp_path / 'objects365'))}
    data_cfg = copy.deepcopy(cfg.train_dataloader.dataset.to_dict())
    for src in data_cfg['sources']:
        src['dataset']['data_root'] = roots[src['dataset']['data_root']]
    ds = DATASETS.build(data_cfg)
    sizes = dict(zip([s['name'] for s in data_cfg['sources']], ds.source_sizes))
    with open(osp.join(world, 'detection', 'annotations', 'boxes_train.json')) as f:
        boxes = json.load(f)
    with_boxes = {a['image_id'] for a in boxes['annotations']}
    assert sizes['coco_panoptic'] >= 1 and sizes['ade_semantic'] >= 1
    assert sizes['o365_engine'] == sizes['o365_engine_captions'] == len(with_boxes)
    det = ds[ds.source_slice('o365_engine')[0]]['data_samples']
    assert det.task == 'detection' and det.source == 'o365_engine'
    ref = ds[ds.source_slice('o365_engine_captions')[0]]['data_samples']
    assert ref.task == 'referring' and ref.source == 'o365_engine_captions'
    with open(osp.join(world, 'detection', 'annotations', 'synthetic_captions_train.json')) as f:
        caps = {c for r in json.load(f)['annotations'] for c in r['captions']}
    assert len(ref.texts) >= 1 and set(ref.texts) <= caps
