"""The plugin's modules are found by name through the registries a config uses."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

PLUGIN_MODULES = {
    'MODELS': ['QueryMeldNet', 'QueryMeldHead', 'QueryMeldPixelDecoder', 'QueryMeldDecoder',
               'DualQueryCrossAttention', 'OpenCLIPTextEncoder', 'QueryTextClassifier',
               'QueryMeldCriterion'],
    'TASK_UTILS': ['GatedCrossEntropyLossCost', 'GatedDiceCost'],
    'DATASETS': ['MultiSourceDataset', 'QMCocoDataset', 'QMCocoPanopticDataset', 'QMLVISDataset',
                 'QMRefCocoDataset', 'SalientFolderDataset', 'SemSegFolderDataset',
                 'BoxCaptionDataset'],
    'DATA_SAMPLERS': ['MultiSourceRatioSampler'],
    'TRANSFORMS': ['PackQueryMeldInputs', 'ToUnifiedTargets', 'LoadQMAnnotations',
                   'LoadCocoPanopticAnnotations', 'LoadSemSegAnnotations',
                   'SafeLoadImageFromFile', 'SetSourceInfo'],
    'METRICS': ['MultiSourceMetric', 'PanopticQualityMetric', 'ReferringMetric',
                'ForegroundMetric', 'OpenVocabIoUMetric', 'OpenVocabCocoMetric'],
    'HOOKS': ['WeightsOnlyCheckpointHook'],
}


@pytest.fixture(scope='module')
def runtime_cfg() -> Config:
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'default_runtime.py'))
    # what mmengine's Runner does with a config: import custom_imports, set the default scope
    from mmengine.utils import import_modules_from_strings
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope(cfg.default_scope)
    return cfg


@pytest.mark.parametrize('registry_name,names', sorted(PLUGIN_MODULES.items()))
def test_plugin_modules_found_in_config_scope(runtime_cfg, registry_name, names):
    import mmdet.registry
    assert runtime_cfg.default_scope == 'mmdet'
    registry = getattr(mmdet.registry, registry_name)
    for name in names:
        cls = registry.get(name)
        assert cls is not None, f'{name} not in mmdet.{registry_name}'
        assert cls.__module__.startswith('mmquerymeld.'), (name, cls.__module__)


def test_other_openmmlab_scopes_resolve_from_mmdet_scope(runtime_cfg):
    """One config can name mmseg and mmpretrain modules by their scope prefix."""
    from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS
    assert DATASETS.get('mmseg.ADE20KDataset').__module__.startswith('mmseg.')
    assert TRANSFORMS.get('mmseg.PhotoMetricDistortion').__module__.startswith('mmseg.')
    assert METRICS.get('mmseg.IoUMetric').__module__.startswith('mmseg.')
    assert MODELS.get('mmpretrain.SwinTransformer').__module__.startswith('mmpretrain.')
    # unprefixed names still mean mmdet's own modules
    assert MODELS.get('ResNet').__module__.startswith('mmdet.')


def test_unknown_type_error_names_the_type(runtime_cfg):
    from mmdet.registry import MODELS
    with pytest.raises(KeyError, match='NoSuchQueryMeldThing'):
        MODELS.build(dict(type='NoSuchQueryMeldThing'))


def test_one_config_uses_mmdet_mmseg_and_mmpretrain_modules(runtime_cfg):
    """configs/querymeld/querymeld_swin_t_meld.py: mmpretrain backbone, mmseg dataset/transform,
    mmdet + mmquerymeld model parts, all built through the registries of the config's scope."""
    from mmdet.registry import DATASETS, MODELS, TRANSFORMS
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'querymeld', 'querymeld_swin_t_meld.py'))
    assert cfg.default_scope == 'mmdet'
    backbone = MODELS.build(cfg.model.backbone)
    assert type(backbone).__module__.startswith('mmpretrain.'), type(backbone)
    sources = {s['name']: s for s in cfg.train_dataloader.dataset.sources}
    ade = sources['ade_semantic']
    assert DATASETS.get(ade['dataset']['type']).__module__.startswith('mmseg.')
    ade_transforms = [TRANSFORMS.get(t['type']) for t in ade['pipeline']]
    modules = {cls.__module__.split('.')[0] for cls in ade_transforms}
    assert {'mmseg', 'mmquerymeld'} <= modules, modules
    assert MODELS.get(cfg.model.type).__module__.startswith('mmquerymeld.')
    assert cfg.model.head.pixel_decoder.in_channels == [96, 192, 384, 768]
