"""Shared fixtures: one small synthetic world per test session, and the synthetic-world config
pointed at it."""
import copy
import os.path as osp

import pytest
from mmengine.config import Config

import mmquerymeld.datasets  # noqa: F401  (registers the data modules only)
from mmquerymeld.testing import generate_synthetic_world

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SYN_CFG = osp.join(REPO, 'configs', '_base_', 'datasets', 'synthetic_world.py')
SMALL = dict(seed=0, num_train=6, num_val=4, img_size=96)


@pytest.fixture(scope='session', autouse=True)
def _registered():
    import mmdet.datasets  # noqa: F401
    import mmdet.engine  # noqa: F401  (mmengine hooks/loops of mmdet, as a Runner has them)


@pytest.fixture(scope='session')
def world(tmp_path_factory):
    """Path of a small synthetic world (6 train / 4 val images per family, 96 px)."""
    root = str(tmp_path_factory.mktemp('synthetic_world'))
    generate_synthetic_world(root, **SMALL)
    return root


def _rebase(obj, root):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == 'data_root' and isinstance(v, str) and v.startswith('data/synthetic/'):
                obj[k] = osp.join(root, v[len('data/synthetic/'):])
            else:
                _rebase(v, root)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _rebase(v, root)
    return obj


@pytest.fixture(scope='session')
def syn_cfg(world):
    """The synthetic-world dataset config (plain dict) with every data_root in the test world."""
    cfg = Config.fromfile(SYN_CFG).to_dict()
    return _rebase(copy.deepcopy(cfg), world)
