"""Evaluation: metrics mmdet / mmseg lack or need adapting (paper section 4 measures).

PQ without panopticapi (with the thing/stuff query-type split of section 4.1), referring
cIoU / mIoU / Prec@X, foreground MAE / maxF / S-measure / IoU, mmseg mIoU and mmdet COCO AP on
open-vocabulary samples, and a per-source wrapper with SeginW-style means over datasets.
"""
from .functional import (f_measure_curve, panoptic_image_stats, pq_average,  # noqa: F401
                         s_measure)
from .metrics import (ForegroundMetric, MultiSourceMetric, OpenVocabCocoMetric,  # noqa: F401
                      OpenVocabIoUMetric, PanopticQualityMetric, ReferringMetric)

__all__ = [
    'PanopticQualityMetric', 'ReferringMetric', 'ForegroundMetric', 'OpenVocabIoUMetric',
    'OpenVocabCocoMetric', 'MultiSourceMetric', 'panoptic_image_stats', 'pq_average',
    'f_measure_curve', 's_measure'
]
