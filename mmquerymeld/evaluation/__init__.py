"""Evaluation: metrics mmdet / mmseg lack or need adapting (paper section 4 measures).

PQ without panopticapi (with the thing/stuff query-type split of section 4.1), referring
cIoU / mIoU / Prec@X, foreground measures (pysodmetrics) and IoU, mmseg mIoU and mmdet COCO AP on
open-vocabulary samples, and a per-source wrapper with SeginW-style means over datasets.
"""
from .functional import panoptic_image_stats, pq_average  # noqa: F401
from .metrics import (ForegroundMetric, MultiSourceMetric, OpenVocabCocoMetric,  # noqa: F401
                      OpenVocabIoUMetric, PanopticQualityMetric, ReferringMetric)

__all__ = [
    'PanopticQualityMetric', 'ReferringMetric', 'ForegroundMetric', 'OpenVocabIoUMetric',
    'OpenVocabCocoMetric', 'MultiSourceMetric', 'panoptic_image_stats', 'pq_average'
]
