"""Registered metrics (mmdet's METRICS registry)."""
from .foreground_metric import ForegroundMetric
from .instance_metric import OpenVocabCocoMetric
from .multi_source_metric import MultiSourceMetric
from .panoptic_metric import PanopticQualityMetric
from .referring_metric import ReferringMetric
from .semantic_metric import OpenVocabIoUMetric

__all__ = [
    'PanopticQualityMetric', 'ReferringMetric', 'ForegroundMetric', 'OpenVocabIoUMetric',
    'OpenVocabCocoMetric', 'MultiSourceMetric'
]
