"""Datasets, samplers and transforms; importing registers them in mmdet's registries."""
from .coco import QMCocoDataset, QMCocoPanopticDataset, QMLVISDataset
from .detection import BoxCaptionDataset
from .folders import SALIENT_LAYOUTS, SalientFolderDataset, SemSegFolderDataset, salient_dirs
from .multi_source import MultiSourceDataset
from .refcoco import QMRefCocoDataset
from .samplers import MultiSourceRatioSampler
from .transforms import *  # noqa: F401,F403

__all__ = [
    'QMCocoDataset', 'QMLVISDataset', 'QMCocoPanopticDataset', 'BoxCaptionDataset',
    'SalientFolderDataset', 'SemSegFolderDataset', 'SALIENT_LAYOUTS', 'salient_dirs',
    'MultiSourceDataset', 'QMRefCocoDataset', 'MultiSourceRatioSampler'
]
