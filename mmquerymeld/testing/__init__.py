"""Test and demo fixtures: the synthetic world generator.

Not imported by ``import mmquerymeld`` (a training run never needs it); import it explicitly::

    from mmquerymeld.testing import generate_synthetic_world
"""
from .synthetic_world import generate_synthetic_world

__all__ = ['generate_synthetic_world']
