"""Fixtures of the evaluation tests."""
import os.path as osp
import sys

import pytest
from mmengine.registry import DefaultScope

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # eval_samples.py

import mmquerymeld.evaluation  # noqa: E402,F401  (registers the metrics)


@pytest.fixture(autouse=True)
def mmdet_scope():
    """Build ``Evaluator`` configs in mmdet's registries, where the metrics live."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield
