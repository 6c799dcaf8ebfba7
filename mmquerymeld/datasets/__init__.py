"""Datasets, samplers and transforms; importing registers them in mmdet's registries."""
from .transforms import *  # noqa: F401,F403
