"""Foreground / salient object segmentation: the SOD literature's measures (pysodmetrics), IoU."""
import logging
from typing import Any, Dict, Optional, Sequence

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional.foreground import (NUM_THRESHOLDS, fill_ignored, prob_to_uint8,
                                     sod_image_measures)
from .sample_utils import as_dict, check_shape, get_field, sample_name, to_tensor


@METRICS.register_module()
class ForegroundMetric(BaseMetric):
    """Salient-object measures of a foreground probability map, as the SOD literature reports.

    Per sample (docs/data_contract.md, all at ``ori_shape``): ground truth
    ``gt_sem_seg.sem_seg`` ``[1, H, W]`` with 1 = foreground, 0 = background, ``ignore_index``
    = not evaluated; prediction ``pred_sem_seg.prob`` ``[1, H, W]`` in [0, 1] and the binary map
    ``pred_sem_seg.sem_seg`` (if absent: ``prob >= 0.5``).

    The salient-object measures come from ``pysodmetrics`` (PySODMetrics, imported when the
    first sample is processed), run as its own evaluation loop runs over saved maps: the
    prediction is quantised to an 8-bit map (``round(255 * prob)``, as a saved PNG), the
    ground truth is a {0, 255} map binarised at 128, and the library min-max normalises each
    prediction itself. Per image, then averaged over images (fractions in [0, 1]):

    - ``maxF`` / ``meanF``: F-measure (beta^2 = ``beta2``) per threshold 0..255, averaged over
      images, then the maximum / the mean over thresholds; ``adpF``: at the adaptive threshold
      (twice the mean of the normalised map);
    - ``maxEm`` / ``meanEm`` / ``adpEm``: E-measure (Fan et al. 2018), same reductions;
    - ``Sm``: S-measure (Fan et al. 2017, object weight ``alpha``);
    - ``wFm``: weighted F-measure (Margolin et al. 2014, beta^2 = 1);
    - ``MAE``: mean absolute error of the normalised map;
    - ``mIoU``: mean of foreground and background IoU of the binary map, from intersections and
      unions summed over the dataset (as mmseg's IoU), ignored pixels excluded;
    - ``fgIoU``: foreground IoU of the binary map per image (1 when both are empty), averaged.

    Ignored pixels (the library has no ignore region; see
    :func:`~mmquerymeld.evaluation.functional.foreground.fill_ignored`): both maps are cropped
    to the bounding box of the valid pixels, so ignored border bands are excluded exactly;
    ignored pixels inside the box become ground-truth background with the lowest valid
    prediction value (0 after normalisation), i.e. correctly rejected background. An image
    without any valid pixel is not evaluated.

    Args:
        ignore_index: Gt value of pixels that are not evaluated.
        beta2: beta^2 of the F-measure.
        alpha: Weight of the object term of the S-measure.
        num_thresholds: Number of thresholds of the F- and E-measure curves; the 8-bit protocol
            has 256 and no other value is accepted.
        collect_device: See :class:`mmengine.evaluator.BaseMetric`.
        prefix: Key prefix; defaults to ``'foreground'``.
        collect_dir: See :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = 'foreground'

    def __init__(self, ignore_index: int = 255, beta2: float = 0.3, alpha: float = 0.5,
                 num_thresholds: int = NUM_THRESHOLDS, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if num_thresholds != NUM_THRESHOLDS:
            raise ValueError(f'{type(self).__name__}: num_thresholds must be {NUM_THRESHOLDS} '
                             f'(the thresholds of 8-bit maps), got {num_thresholds}')
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
            if not valid.any():
                continue  # nothing to score
            fg = gt == 1
            pred8, gt8 = fill_ignored(prob_to_uint8(prob), fg, valid)
            measures = sod_image_measures(pred8, gt8, beta2=self.beta2, alpha=self.alpha)
            b_valid, fg_valid = binary[valid], fg[valid]
            measures['areas'] = np.array([(b_valid & fg_valid).sum(), (b_valid | fg_valid).sum(),
                                          (~b_valid & ~fg_valid).sum(),
                                          (~b_valid | ~fg_valid).sum()], dtype=np.float64)
            self.results.append(measures)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Average the per-image measures (curves averaged over images before max / mean).

        Args:
            results: One dict per evaluated sample from :meth:`process`.

        Returns:
            ``maxF``, ``meanF``, ``adpF``, ``maxEm``, ``meanEm``, ``adpEm``, ``Sm``, ``wFm``,
            ``MAE``, ``mIoU``, ``fgIoU``; empty (with a warning) when no sample was evaluated.
        """
        if not results:
            print_log(f'{type(self).__name__}: no samples were evaluated; returning no metrics',
                      logger='current', level=logging.WARNING)
            return {}

        def mean(key: str) -> np.ndarray:
            return np.mean(np.array([r[key] for r in results], dtype=np.float64), axis=0)

        f_curve, e_curve = mean('f_curve'), mean('e_curve')
        areas = np.stack([r['areas'] for r in results])
        total = areas.sum(0)
        ious = [total[0] / total[1] if total[1] else 1.0, total[2] / total[3] if total[3] else 1.0]
        fg_iou = np.where(areas[:, 1] > 0, areas[:, 0] / np.maximum(areas[:, 1], 1), 1.0)
        values = dict(maxF=f_curve.max(), meanF=f_curve.mean(), adpF=mean('f_adp'),
                      maxEm=e_curve.max(), meanEm=e_curve.mean(), adpEm=mean('e_adp'),
                      Sm=mean('sm'), wFm=mean('wfm'), MAE=mean('mae'), mIoU=np.mean(ious),
                      fgIoU=fg_iou.mean())
        return {k: round(float(v), 6) for k, v in values.items()}
