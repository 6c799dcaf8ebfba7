"""Transforms of the multi-source data pipelines; importing registers them in mmdet's TRANSFORMS."""
from .box_only_masks import BoxOnlyMasks
from .formatting import PackQueryMeldInputs
from .loading import (LoadCocoPanopticAnnotations, LoadQMAnnotations, LoadSemSegAnnotations,
                      SafeLoadImageFromFile, SetSourceInfo)
from .unified import ToUnifiedTargets

__all__ = [
    'SafeLoadImageFromFile', 'LoadCocoPanopticAnnotations', 'LoadQMAnnotations',
    'LoadSemSegAnnotations', 'SetSourceInfo', 'ToUnifiedTargets', 'PackQueryMeldInputs',
    'BoxOnlyMasks'
]
