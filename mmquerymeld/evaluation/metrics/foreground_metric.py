"""Foreground / salient object segmentation: MAE, max F-measure, S-measure, IoU."""
import logging
from typing import Any, Dict, Optional, Sequence

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional.foreground import f_measure_curve, s_measure
from .sample_utils import as_dict, check_shape, get_field, sample_name, to_tensor


@METRICS.register_module()
class ForegroundMetric(BaseMetric):
    """Salient-object measures of a foreground probability map.

    Per sample (docs/data_contract.md, all at ``ori_shape``): ground truth
    ``gt_sem_seg.sem_seg`` ``[1, H, W]`` with 1 = foreground, 0 = background, ``ignore_index``
    = not evaluated; prediction ``pred_sem_seg.prob`` ``[1, H, W]`` in [0, 1] and the binary map
    ``pred_sem_seg.sem_seg`` (if absent: ``prob >= 0.5``).

    Reported (fractions in [0, 1], as in the salient-object literature):

    - ``MAE``: mean absolute error of ``prob`` over valid pixels, averaged over images;
    - ``maxF``: F-measure (beta^2 = 0.3) at 256 thresholds, per image, averaged over images,
      then the maximum over thresholds;
    - ``Sm``: S-measure (Fan et al. 2017, alpha = 0.5), averaged over images. It needs the full
      2-D map: ignored pixels are set to background in both gt and prediction for this measure;
    - ``mIoU``: mean of foreground and background IoU of the binary map, from intersections and
      unions summed over the dataset (as mmseg's IoU);
    - ``fgIoU``: foreground IoU of the binary map per image (1 when both are empty), averaged.

    Args:
        ignore_index: Gt value of pixels that are not evaluated.
        beta2: beta^2 of the F-measure.
        alpha: Weight of the object term of the S-measure.
        num_thresholds: Number of thresholds of the F-measure curve.
        collect_device: See :class:`mmengine.evaluator.BaseMetric`.
        prefix: Key prefix; defaults to ``'foreground'``.
        collect_dir: See :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = 'foreground'

    def __init__(self, ignore_index: int = 255, beta2: float = 0.3, alpha: float = 0.5,
                 num_thresholds: int = 256, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.ignore_index = ignore_index
        self.beta2 = beta2
        self.alpha = alpha
        self.num_thresholds = num_thresholds

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Compute the per-image measures and store them.

        Args:
            data_batch: The dataloader batch (unused).
            data_samples: Samples (dicts or ``DetDataSample``).
        """
        name = type(self).__name__
        for raw in data_samples:
            sample = as_dict(raw)
            gt = to_tensor(get_field(sample, 'gt_sem_seg.sem_seg', name), sample,
                           'gt_sem_seg.sem_seg', name)
            gt = gt.reshape(gt.shape[-2:]).long().numpy()
            prob = to_tensor(get_field(sample, 'pred_sem_seg.prob', name), sample,
                             'pred_sem_seg.prob', name)
            check_shape(prob, gt.shape, sample, 'pred_sem_seg.prob', name)
            prob = prob.reshape(gt.shape).double().numpy()
            if prob.size and (prob.min() < 0 or prob.max() > 1):
                raise ValueError(f'{name}: sample {sample_name(sample)}: field '
                                 f'"pred_sem_seg.prob" must lie in [0, 1]')
            binary = get_field(sample, 'pred_sem_seg.sem_seg', name, default=None)
            if binary is None:
                binary = prob >= 0.5
            else:
                binary = to_tensor(binary, sample, 'pred_sem_seg.sem_seg', name)
                check_shape(binary, gt.shape, sample, 'pred_sem_seg.sem_seg', name)
                binary = binary.reshape(gt.shape).numpy() > 0
            valid = gt != self.ignore_index
            bad = valid & (gt != 0) & (gt != 1)
            if bad.any():
                raise ValueError(f'{name}: sample {sample_name(sample)}: field '
                                 f'"gt_sem_seg.sem_seg" holds values other than 0, 1 and '
                                 f'{self.ignore_index}')
            fg = gt == 1
            p_valid, fg_valid = prob[valid], fg[valid]
            mae = float(np.abs(p_valid - fg_valid).mean()) if p_valid.size else 0.0
            f_curve = f_measure_curve(p_valid, fg_valid, self.beta2, self.num_thresholds)
            sm = s_measure(np.where(valid, prob, 0.0), fg, self.alpha)
            b_valid = binary[valid]
            inter_fg = int((b_valid & fg_valid).sum())
            union_fg = int((b_valid | fg_valid).sum())
            inter_bg = int((~b_valid & ~fg_valid).sum())
            union_bg = int((~b_valid | ~fg_valid).sum())
            self.results.append(dict(mae=mae, f_curve=f_curve, sm=sm,
                                     areas=np.array([inter_fg, union_fg, inter_bg, union_bg],
                                                    dtype=np.float64)))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Average the per-image measures.

        Args:
            results: One dict per sample from :meth:`process`.

        Returns:
            ``MAE``, ``maxF``, ``Sm``, ``mIoU``, ``fgIoU``; empty (with a warning) when there
            were no samples.
        """
        if not results:
            print_log(f'{type(self).__name__}: no samples were evaluated; returning no metrics',
                      logger='current', level=logging.WARNING)
            return {}
        areas = np.stack([r['areas'] for r in results])
        total = areas.sum(0)
        ious = [total[0] / total[1] if total[1] else 1.0, total[2] / total[3] if total[3] else 1.0]
        fg_iou = np.where(areas[:, 1] > 0, areas[:, 0] / np.maximum(areas[:, 1], 1), 1.0)
        return dict(
            MAE=round(float(np.mean([r['mae'] for r in results])), 6),
            maxF=round(float(np.mean([r['f_curve'] for r in results], axis=0).max()), 6),
            Sm=round(float(np.mean([r['sm'] for r in results])), 6),
            mIoU=round(float(np.mean(ious)), 6),
            fgIoU=round(float(fg_iou.mean()), 6))
