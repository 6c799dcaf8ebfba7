"""Paper configs start from pretrained weights; offline, the error names the files and the keys.

No test here can download anything: every download function is replaced by one that fails (as
it does without network access) and the caches point at empty temporary folders.
"""
import glob
import importlib.util
import os.path as osp
import sys

import open_clip
import pytest
import torch
from mmengine.config import Config

from mmquerymeld.engine import check_pretrained_weights, iter_pretrained_sources

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'querymeld', '*.py')))
R50_MELD = osp.join(REPO, 'configs', 'querymeld', 'querymeld_r50_meld.py')
DEMO = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
BACKBONE_KEY = 'model.backbone.init_cfg.checkpoint'
TEXT_KEY = 'model.head.text_encoder.pretrained'


class NoNetwork(OSError):
    pass


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Every download fails; torch.hub's cache is an empty folder. Returns the attempted URLs."""
    attempts = []

    def fail(*args, **kwargs):
        attempts.append(args[0] if args else kwargs)
        raise NoNetwork('[Errno -2] Name or service not known')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', fail)
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', fail)
    monkeypatch.setattr(open_clip, 'download_pretrained', fail)
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    return attempts


@pytest.mark.parametrize('path', PAPER_CONFIGS, ids=osp.basename)
def test_paper_configs_start_from_imagenet_and_clip(path):
    sources = {s.key: s for s in iter_pretrained_sources(Config.fromfile(path).model)}
    assert set(sources) == {BACKBONE_KEY, TEXT_KEY}, sources
    assert sources[TEXT_KEY].source == 'openai'
    # OpenAI's weights use QuickGELU: the matching open_clip architecture (ViT-L/14 in the
    # paper's full Swin-L configuration, ViT-B/16 elsewhere)
    large = 'vitl' in osp.basename(path)
    assert sources[TEXT_KEY].model_name == ('ViT-L-14-quickgelu' if large else
                                            'ViT-B-16-quickgelu')
    if 'r50' in osp.basename(path):
        assert sources[BACKBONE_KEY].source == 'torchvision://resnet50'


def test_tiny_demo_keeps_random_weights():
    assert list(iter_pretrained_sources(Config.fromfile(DEMO).model)) == []


def test_building_the_r50_meld_model_offline_names_the_file_and_the_key(offline):
    from mmdet.registry import MODELS
    from mmquerymeld.utils import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(R50_MELD)
    with pytest.raises(FileNotFoundError) as info:
        MODELS.build(cfg.model)
    msg = str(info.value)
    assert f'{TEXT_KEY}=/path/to/ViT-B-16.pt' in msg, msg
    assert 'openaipublic.azureedge.net' in msg and 'timm/vit_base_patch16_clip_224.openai' in msg
    assert len(offline) == 1  # one attempt, which failed


def test_preflight_offline_lists_every_file_and_key(offline):
    cfg = Config.fromfile(R50_MELD)
    with pytest.raises(FileNotFoundError) as info:
        check_pretrained_weights(cfg)
    msg = str(info.value)
    assert f'{BACKBONE_KEY}=/path/to/resnet50-0676ba61.pth' in msg, msg
    assert 'https://download.pytorch.org/models/resnet50-0676ba61.pth' in msg
    assert f'{TEXT_KEY}=/path/to/ViT-B-16.pt' in msg
    assert 'Name or service not known' in msg


def test_preflight_accepts_local_files_without_network(offline, tmp_path):
    cfg = Config.fromfile(R50_MELD)
    for name in ('resnet50.pth', 'ViT-B-16.pt'):
        (tmp_path / name).write_bytes(b'weights')
    cfg.merge_from_dict({BACKBONE_KEY: str(tmp_path / 'resnet50.pth'),
                         TEXT_KEY: str(tmp_path / 'ViT-B-16.pt')})
    assert len(check_pretrained_weights(cfg)) == 2
    assert offline == []
    # a missing local file is named with its key
    cfg.merge_from_dict({TEXT_KEY: str(tmp_path / 'nope.pt')})
    with pytest.raises(FileNotFoundError, match=f'{TEXT_KEY}: file .*nope.pt'):
        check_pretrained_weights(cfg)


def test_preflight_finds_a_cached_torchvision_file(offline, tmp_path):
    cfg = Config.fromfile(R50_MELD)
    cfg.merge_from_dict({TEXT_KEY: None})
    cached = tmp_path / 'hub' / 'checkpoints' / 'resnet50-0676ba61.pth'
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b'weights')
    assert [s.key for s in check_pretrained_weights(cfg)] == [BACKBONE_KEY]
    assert offline == []


def test_train_tool_stops_before_building_the_runner(offline, monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location('qm_tool_train_pretrained',
                                                  osp.join(REPO, 'tools', 'train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)

    def unreachable(*args, **kwargs):
        raise AssertionError('the Runner was built before the weights were checked')

    monkeypatch.setattr(tool.Runner, 'from_cfg', unreachable)
    monkeypatch.setattr(sys, 'argv', ['train.py', R50_MELD, '--work-dir', str(tmp_path / 'w')])
    with pytest.raises(FileNotFoundError, match=BACKBONE_KEY):
        tool.main()
