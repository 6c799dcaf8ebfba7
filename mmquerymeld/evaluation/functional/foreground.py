"""Foreground (salient object) map measures: MAE, F-measure curve, S-measure.

The F-measure curve and S-measure follow the definitions used by the salient-object literature
(F-measure with beta^2 = 0.3 over 256 thresholds, averaged over images before the max;
S-measure: Fan et al. 2017, "Structure-measure: A New Way to Evaluate Foreground Maps").
All inputs are float64 numpy arrays; ``pred`` in [0, 1] and ``gt`` boolean.
"""
from typing import Tuple

import numpy as np

_EPS = np.finfo(np.float64).eps


def f_measure_curve(pred: np.ndarray, gt: np.ndarray, beta2: float = 0.3,
                    num_thresholds: int = 256) -> np.ndarray:
    """F-measure of one image at thresholds ``k / (num_thresholds - 1)``, k = 0..num-1.

    A pixel is predicted foreground at threshold k when ``floor(pred * (num - 1)) >= k``.
    Precision is 0 when nothing is predicted, recall is 0 when the gt is empty.

    Args:
        pred: Float ``[M]`` (valid pixels), values in [0, 1].
        gt: Bool ``[M]``.
        beta2: beta^2 of the F-measure.
        num_thresholds: Number of thresholds.

    Returns:
        Float ``[num_thresholds]``: F-measure per threshold (index k = threshold k).
    """
    levels = num_thresholds - 1
    q = np.clip(np.floor(pred * levels + 1e-9), 0, levels).astype(np.int64)
    fg_hist = np.bincount(q[gt], minlength=num_thresholds)
    bg_hist = np.bincount(q[~gt], minlength=num_thresholds)
    tp = np.cumsum(fg_hist[::-1])[::-1].astype(np.float64)  # pixels with q >= k
    pos = tp + np.cumsum(bg_hist[::-1])[::-1]
    precision = tp / np.maximum(pos, 1)
    recall = tp / max(int(gt.sum()), 1)
    num = (1 + beta2) * precision * recall
    den = beta2 * precision + recall
    return np.where(num > 0, num / np.where(den > 0, den, 1), 0.0)


def _object_score(x: np.ndarray) -> float:
    """Fan et al. 2017 eq. (object similarity) on the values of one region."""
    if x.size == 0:
        return 0.0
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return 2.0 * mean / (mean * mean + 1.0 + std + _EPS)


def _ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Single-window SSIM of Fan et al. 2017 (region-aware term)."""
    n = pred.size
    if n == 0:
        return 0.0
    x, y = pred.mean(), gt.mean()
    sx = ((pred - x) ** 2).sum() / (n - 1 + _EPS)
    sy = ((gt - y) ** 2).sum() / (n - 1 + _EPS)
    sxy = ((pred - x) * (gt - y)).sum() / (n - 1 + _EPS)
    alpha = 4 * x * y * sxy
    beta = (x * x + y * y) * (sx + sy)
    if alpha != 0:
        return float(alpha / (beta + _EPS))
    return 1.0 if beta == 0 else 0.0


def _centroid(gt: np.ndarray) -> Tuple[int, int]:
    """Split point (x, y) of the region term: the gt centroid (rounded) + 1, or the centre."""
    h, w = gt.shape
    if not gt.any():
        return int(round(w / 2)) + 1, int(round(h / 2)) + 1
    ys, xs = np.nonzero(gt)
    return int(np.round(xs.mean())) + 1, int(np.round(ys.mean())) + 1


def s_measure(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.5) -> float:
    """Structure measure S = alpha * S_object + (1 - alpha) * S_region (Fan et al. 2017).

    Args:
        pred: Float ``[H, W]`` in [0, 1].
        gt: Bool ``[H, W]``.
        alpha: Weight of the object-aware term.

    Returns:
        S-measure in [0, 1].
    """
    pred = pred.astype(np.float64)
    y = gt.mean()
    if y == 0:
        return float(1.0 - pred.mean())
    if y == 1:
        return float(pred.mean())
    # object-aware term
    fg_score = _object_score(pred[gt])
    bg_score = _object_score(1.0 - pred[~gt])
    s_object = y * fg_score + (1 - y) * bg_score
    # region-aware term: four quadrants split at the gt centroid, weighted by area
    h, w = gt.shape
    cx, cy = _centroid(gt)
    gtf = gt.astype(np.float64)
    area = h * w
    weights = (cx * cy / area, (w - cx) * cy / area, cx * (h - cy) / area)
    weights = weights + (1 - sum(weights),)
    quads = ((slice(0, cy), slice(0, cx)), (slice(0, cy), slice(cx, w)),
             (slice(cy, h), slice(0, cx)), (slice(cy, h), slice(cx, w)))
    s_region = sum(wt * _ssim(pred[q], gtf[q]) for wt, q in zip(weights, quads))
    return float(max(alpha * s_object + (1 - alpha) * s_region, 0.0))
