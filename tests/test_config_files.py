"""Every config under configs/ parses (inheritance, {{_base_.x}} references, _delete_ keys)."""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True))


def test_configs_found():
    assert len(CONFIGS) >= 20


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_parses(path):
    cfg = Config.fromfile(path)
    rel = osp.relpath(path, osp.join(REPO, 'configs'))
    if rel.startswith(('querymeld', 'demo')):  # full configs: runnable by tools/train.py
        assert cfg.default_scope == 'mmdet'
        assert 'mmquerymeld' in cfg.custom_imports.imports
        for key in ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper',
                    'val_evaluator'):
            assert key in cfg, f'{rel}: missing {key}'
    if rel == osp.join('_base_', 'schedules', 'schedule_iter.py'):
        # the iteration loop that resumes without replaying data (mmquerymeld.engine.loops)
        assert cfg.train_cfg == dict(type='ResumableIterBasedTrainLoop', max_iters=368750,
                                     val_interval=5000)
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
