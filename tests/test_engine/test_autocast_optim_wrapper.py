"""AutocastOptimWrapper (bf16 autocast without a GPU) and tools/train.py's --amp choice."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

from mmquerymeld.engine import AutocastOptimWrapper

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load_train_tool():
    spec = importlib.util.spec_from_file_location('qm_tool_train_amp',
                                                  osp.join(REPO, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(model: nn.Module, **kwargs):
    cfg = dict(type='AutocastOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3), **kwargs)
    with DefaultScope.overwrite_default_scope('mmdet'):  # as the Runner of a config does
        return build_optim_wrapper(model, cfg)


def test_built_from_config_in_mmdet_scope():
    wrapper = _build(nn.Linear(4, 3))
    assert type(wrapper) is AutocastOptimWrapper
    assert wrapper.cast_dtype == torch.bfloat16 and wrapper.device_type == 'cpu'


def test_optim_context_runs_forward_in_bf16_and_steps_fp32_weights():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    wrapper = _build(model)
    x = torch.randn(5, 4)
    assert not torch.is_autocast_enabled('cpu')
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16
        y = model(x)
        loss = y.float().pow(2).mean()
    assert not torch.is_autocast_enabled('cpu')
    assert y.dtype == torch.bfloat16
    before = model.weight.detach().clone()
    wrapper.update_params(loss)
    assert model.weight.dtype == torch.float32
    assert not torch.equal(before, model.weight.detach())


def test_fp16_is_refused_with_a_pointer_to_amp_optim_wrapper():
    with pytest.raises(ValueError, match='AmpOptimWrapper'):
        _build(nn.Linear(2, 2), dtype='float16')


def test_enable_amp_picks_the_wrapper_by_device(monkeypatch):
    tool = _load_train_tool()
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW'))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    tool.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16' and cfg.optim_wrapper.device_type == 'cpu'
    assert 'loss_scale' not in cfg.optim_wrapper

    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='AdamW'))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    tool.enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'

    cfg = Config(dict(optim_wrapper=dict(type='MyWrapper', optimizer=dict(type='AdamW'))))
    with pytest.raises(ValueError, match='MyWrapper'):
        tool.enable_amp(cfg)
