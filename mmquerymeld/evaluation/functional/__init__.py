"""Metric computations independent of mmengine (pure tensors / arrays)."""
from .foreground import fill_ignored, prob_to_uint8, sod_image_measures
from .panoptic import (PanopticImageStats, gt_id_map, merge_category_stats,
                       panoptic_image_stats, pq_average)

__all__ = [
    'PanopticImageStats', 'gt_id_map', 'panoptic_image_stats', 'pq_average',
    'merge_category_stats', 'prob_to_uint8', 'fill_ignored', 'sod_image_measures'
]
