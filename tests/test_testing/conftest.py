"""Fixtures of the generator tests: one small synthetic world per session."""
import pytest

from mmquerymeld.testing import generate_synthetic_world


@pytest.fixture(scope='session')
def world(tmp_path_factory) -> str:
    """Path of a small synthetic world (6 train / 4 val images per family, 96 px)."""
    root = str(tmp_path_factory.mktemp('synthetic_world'))
    generate_synthetic_world(root, seed=0, num_train=6, num_val=4, img_size=96)
    return root
