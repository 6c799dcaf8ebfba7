"""MultiSourceDataset: per-source pipelines and metainfo, lazy init, source lookup, configs."""
import copy
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mmquerymeld.datasets import MultiSourceDataset
from mmquerymeld.testing import LVIS_CLASSES, THING_CLASSES
from mmquerymeld.utils import TASKS

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))


@pytest.fixture(scope='module')
def train_set(syn_cfg):
    return MultiSourceDataset(**{k: v for k, v in syn_cfg['train_dataloader']['dataset'].items()
                                 if k != 'type'})


def test_sources_metainfo_and_lookup(train_set, syn_cfg):
    meta = train_set.metainfo
    names = [s['name'] for s in syn_cfg['train_dataloader']['dataset']['sources']]
    assert meta['source_names'] == names and list(meta['sources']) == names
    assert set(meta['tasks']) == {'panoptic', 'instance', 'semantic', 'referring', 'foreground',
                                  'detection'}
    srcs = meta['sources']
    assert srcs['syn_coco_panoptic']['task'] == 'panoptic'
    assert list(srcs['syn_coco_panoptic']['thing_classes']) == list(THING_CLASSES)
    assert srcs['syn_coco_instance']['thing_flags'] == [True] * 5
    assert len(srcs['syn_ade_semantic']['classes']) == 10
    assert srcs['syn_duts']['classes'] == ['foreground']
    assert srcs['syn_coco_panoptic']['ratio'] == 2.0
    # every index maps to its source, and the sample says so
    for i, name in enumerate(names):
        rng = train_set.source_slice(name)
        for idx in (rng.start, rng.stop - 1):
            assert train_set.get_source_name(idx) == name
            assert train_set.get_source_task(idx) == meta['sources'][name]['task']
            item = train_set[idx]
            assert item['data_samples'].source == name
            assert item['data_samples'].task == meta['sources'][name]['task']
    assert len(train_set) == sum(train_set.source_sizes)


def test_no_forced_common_metainfo(syn_cfg):
    ds = MultiSourceDataset([syn_cfg['syn_instance_train'], syn_cfg['syn_lvis_train']])
    srcs = ds.metainfo['sources']
    assert list(srcs['syn_coco_instance']['classes']) == list(THING_CLASSES)
    assert list(srcs['syn_lvis']['classes']) == list(LVIS_CLASSES)


def test_lazy_init(syn_cfg):
    ds = MultiSourceDataset([syn_cfg['syn_semantic_train'], syn_cfg['syn_foreground_train']],
                            lazy_init=True)
    assert not ds._fully_initialized
    assert not any(d._fully_initialized for d in ds.datasets)
    assert ds.metainfo['sources']['syn_duts']['task'] == 'foreground'
    assert len(ds) == 12 and ds._fully_initialized
    assert ds.get_source_name(11) == 'syn_duts'


def test_bad_source_configs(syn_cfg, world):
    src = copy.deepcopy(syn_cfg['syn_instance_train'])
    with pytest.raises(ValueError, match='task'):
        MultiSourceDataset([dict(src, task='captioning')])
    with pytest.raises(ValueError, match='duplicate'):
        MultiSourceDataset([src, src])
    with pytest.raises(KeyError, match='unknown keys'):
        MultiSourceDataset([dict(src, ratios=2)])
    missing = dict(src, dataset=dict(src['dataset'], ann_file='coco/annotations/nope.json'))
    with pytest.raises(FileNotFoundError, match=r'nope\.json'):
        MultiSourceDataset([missing])
    sem = copy.deepcopy(syn_cfg['syn_semantic_train'])
    sem['dataset']['data_prefix']['seg_map_path'] = 'ade/missing_dir'
    with pytest.raises(FileNotFoundError, match='missing_dir'):
        MultiSourceDataset([sem])
    ref = copy.deepcopy(syn_cfg['syn_referring_train'])
    ref['dataset']['split_by'] = 'umd'  # refcoco/ has no refs(umd).p
    with pytest.raises(FileNotFoundError, match=r'refs\(umd\)\.p'):
        MultiSourceDataset([ref])


def test_runner_builds_the_config_dataloaders(syn_cfg):
    init_default_scope('mmdet')
    cfg = copy.deepcopy(syn_cfg['train_dataloader'])
    cfg.update(num_workers=0, persistent_workers=False, batch_size=3)
    loader = Runner.build_dataloader(cfg, seed=0)
    assert type(loader.sampler).__name__ == 'MultiSourceRatioSampler'
    batch = next(iter(loader))
    assert len(batch['inputs']) == 3 and len(batch['data_samples']) == 3
    assert all(s.task in TASKS for s in batch['data_samples'])
    val = copy.deepcopy(syn_cfg['val_dataloader'])
    val.update(num_workers=0)
    vloader = Runner.build_dataloader(val, seed=0)
    seen = [s.source for b in vloader for s in b['data_samples']]
    assert len(seen) == len(vloader.dataset)
    assert len(set(seen)) == 6  # one source per task, sequential


def test_real_dataset_configs_parse():
    cfg = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/querymeld_joint.py'))
    sources = cfg.train_dataloader.dataset.sources
    assert [s.name for s in sources][:3] == ['coco_panoptic', 'lvis', 'ade_semantic']
    assert {s.task for s in sources} == {'panoptic', 'instance', 'semantic', 'referring',
                                         'foreground', 'detection'}
    ref = [s for s in sources if s.task == 'referring' and s.name.startswith('refcoco')]
    for s in ref:  # referring: no random crop, no flip
        assert not {'RandomCrop', 'RandomFlip'} & {t.type for t in s.pipeline}
    ade = [s for s in sources if s.name == 'ade_semantic'][0]
    assert any(t.type == 'mmseg.RandomCrop' and tuple(t.crop_size) == (512, 512)
               for t in ade.pipeline)
    coco = [s for s in sources if s.name == 'coco_panoptic'][0]
    assert any(t.type == 'RandomResize' and tuple(t.ratio_range) == (0.1, 2.0)
               for t in coco.pipeline)
