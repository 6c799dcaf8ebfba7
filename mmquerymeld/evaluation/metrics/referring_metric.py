"""Referring segmentation: cIoU, mIoU and Prec@X (as in the RefCOCO literature, e.g. LAVT)."""
import logging
from typing import Any, Dict, Optional, Sequence

import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from .sample_utils import as_dict, binary_masks, get_field, sample_name


@METRICS.register_module()
class ReferringMetric(BaseMetric):
    """Overall (cumulative) IoU, mean IoU and precision at IoU thresholds.

    Each expression ``i`` of a sample (``texts[i]``) has one gt mask ``gt_instances.masks[i]``
    and one predicted mask ``pred_instances.masks[i]`` (same order, both at ``ori_shape``;
    float masks are thresholded at 0.5). Per expression: I = |pred & gt|, U = |pred | gt|;
    IoU = I / U, and 1 when both masks are empty.

    - ``cIoU`` = sum(I) / sum(U) over all expressions of the dataset;
    - ``mIoU`` = mean of the per-expression IoUs;
    - ``Prec@t`` = share of expressions with IoU >= t, for each t in ``prec_thresholds``.

    All values are percentages. Keys: ``cIoU``, ``mIoU``, ``Prec@0.5``, ``Prec@0.7``,
    ``Prec@0.9`` (with the default thresholds).

    Args:
        prec_thresholds: IoU thresholds of the precision measures.
        collect_device: See :class:`mmengine.evaluator.BaseMetric`.
        prefix: Key prefix; defaults to ``'referring'``.
        collect_dir: See :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = 'referring'

    def __init__(self, prec_thresholds: Sequence[float] = (0.5, 0.7, 0.9),
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.prec_thresholds = tuple(float(t) for t in prec_thresholds)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Store per-expression intersection and union areas.

        Args:
            data_batch: The dataloader batch (unused).
            data_samples: Samples (dicts or ``DetDataSample``).
        """
        name = type(self).__name__
        for raw in data_samples:
            sample = as_dict(raw)
            gt = binary_masks(get_field(sample, 'gt_instances.masks', name), sample,
                              'gt_instances.masks', name)
            shape = tuple(sample.get('ori_shape', gt.shape[-2:]))[:2]
            if gt.shape[0] and tuple(gt.shape[-2:]) != shape:
                raise ValueError(f'{name}: sample {sample_name(sample)}: field '
                                 f'"gt_instances.masks" has spatial shape {tuple(gt.shape[-2:])}, '
                                 f'expected ori_shape {shape}')
            pred = binary_masks(get_field(sample, 'pred_instances.masks', name), sample,
                                'pred_instances.masks', name, shape)
            if pred.shape[0] != gt.shape[0]:
                raise ValueError(f'{name}: sample {sample_name(sample)}: {pred.shape[0]} '
                                 f'predicted masks for {gt.shape[0]} expressions; '
                                 '"pred_instances.masks" needs one mask per text, in order')
            if gt.shape[0] == 0:
                self.results.append((torch.zeros(0), torch.zeros(0)))
                continue
            inter = (pred & gt).flatten(1).sum(1).double()
            union = (pred | gt).flatten(1).sum(1).double()
            self.results.append((inter, union))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Compute cIoU, mIoU and Prec@X (percent).

        Args:
            results: One ``(intersections [K], unions [K])`` pair per sample.

        Returns:
            The metrics; empty (with a warning) when there were no expressions.
        """
        inter = torch.cat([r[0].double() for r in results]) if results else torch.zeros(0)
        union = torch.cat([r[1].double() for r in results]) if results else torch.zeros(0)
        if inter.numel() == 0:
            print_log(f'{type(self).__name__}: no expressions were evaluated; returning no '
                      'metrics', logger='current', level=logging.WARNING)
            return {}
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        total_union = float(union.sum())
        metrics = dict(
            cIoU=round(100 * float(inter.sum()) / total_union, 4) if total_union else 100.0,
            mIoU=round(100 * float(iou.mean()), 4))
        for t in self.prec_thresholds:
            metrics[f'Prec@{t:g}'] = round(100 * float((iou >= t - 1e-12).double().mean()), 4)
        return metrics
