"""Metric computations independent of mmengine (pure tensors / arrays)."""
from .foreground import f_measure_curve, s_measure
from .panoptic import (PanopticImageStats, gt_id_map, merge_category_stats,
                       panoptic_image_stats, pq_average)

__all__ = [
    'PanopticImageStats', 'gt_id_map', 'panoptic_image_stats', 'pq_average',
    'merge_category_stats', 'f_measure_curve', 's_measure'
]
