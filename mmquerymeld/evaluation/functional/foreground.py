"""Foreground (salient object) measures of one image, through ``pysodmetrics``.

The salient-object literature (DUTS, DIS5K, UniLSeg, InSPyReNet) scores 8-bit maps with
PySODMetrics (``pip install pysodmetrics``, imported as ``py_sod_metrics``): the prediction is read
as a uint8 grey image and min-max normalised per image, the ground truth is binarised at 128.
The helpers here bring a probability map and a ground truth with an ignore region to that
form, and run the library's own evaluators on it, one image at a time, so that per-image
results can be gathered across processes and averaged as the library's own loop does.

``py_sod_metrics`` (which pulls in scikit-image and scikit-learn) is imported inside
:func:`sod_image_measures` only, never at import time of this module.
"""
from typing import Dict, Tuple

import numpy as np

NUM_THRESHOLDS = 256  # pysodmetrics' curves: thresholds 0..255 of the 8-bit map


def prob_to_uint8(prob: np.ndarray) -> np.ndarray:
    """Quantise a probability map as a saved 8-bit PNG holds it.

    ``round(prob * 255)`` with halves rounded up (as ``torchvision.utils.save_image``).

    Args:
        prob: Float ``[H, W]``, values in [0, 1].

    Returns:
        Uint8 ``[H, W]`` in 0..255.
    """
    return np.clip(np.floor(prob.astype(np.float64) * 255 + 0.5), 0, 255).astype(np.uint8)


def fill_ignored(pred: np.ndarray, fg: np.ndarray,
                 valid: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Turn a map pair with an ignore region into full 8-bit maps for pysodmetrics.

    PySODMetrics has no ignore region, and the S-measure, E-measure and weighted F-measure
    need a whole 2-D map, so the ignored pixels cannot just be dropped:

    1. the maps are cropped to the bounding box of the valid pixels (ignored bands at the
       borders, e.g. padding, are thus excluded exactly);
    2. ignored pixels left inside the box become ground-truth background, and their
       prediction takes the lowest prediction value among the valid pixels: after the
       library's per-image min-max normalisation (which the valid pixels alone thus decide)
       they are 0, a correctly rejected background at every threshold above 0 (when the
       valid prediction is constant the library does not normalise, and they hold that
       constant like the valid pixels).

    Args:
        pred: Uint8 ``[H, W]`` prediction (:func:`prob_to_uint8`).
        fg: Bool ``[H, W]`` ground-truth foreground.
        valid: Bool ``[H, W]``, False where ignored; at least one True.

    Returns:
        ``(pred, gt)``: uint8 ``[h, w]`` prediction and uint8 ``[h, w]`` ground truth in
        {0, 255}, ``h <= H``, ``w <= W``.
    """
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred, fg, valid = pred[box], fg[box], valid[box]
    pred = np.where(valid, pred, pred[valid].min()).astype(np.uint8)
    gt = np.where(valid & fg, 255, 0).astype(np.uint8)
    return pred, gt


def sod_image_measures(pred: np.ndarray, gt: np.ndarray, beta2: float = 0.3,
                       alpha: float = 0.5) -> Dict[str, np.ndarray]:
    """Run pysodmetrics' evaluators on one 8-bit map pair.

    Args:
        pred: Uint8 ``[H, W]`` prediction (min-max normalised by the library).
        gt: Uint8 ``[H, W]`` ground truth (foreground where > 128).
        beta2: beta^2 of the F-measure (the library's ``beta`` argument).
        alpha: Weight of the object term of the S-measure.

    Returns:
        Float64 values: ``f_curve`` ``[256]`` (F-measure per threshold), ``f_adp`` (F-measure at
        the adaptive threshold 2 * mean), ``e_curve`` ``[256]`` and ``e_adp`` (E-measure, Fan et al.
        2018), ``sm`` (S-measure, Fan et al. 2017), ``wfm`` (weighted F-measure, Margolin et al.
        2014, beta^2 = 1) and ``mae``; scalars as 0-d arrays.
    """
    import py_sod_metrics as psm  # heavy (scikit-image, scikit-learn): imported when used

    fm = psm.FmeasureV2(metric_handlers=dict(
        fm=psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=beta2)))
    em, sm, wfm, mae = psm.Emeasure(), psm.Smeasure(alpha=alpha), psm.WeightedFmeasure(), psm.MAE()
    for evaluator in (fm, em, sm, wfm, mae):
        evaluator.step(pred=pred, gt=gt)
    f_res, e_res = fm.get_results()['fm'], em.get_results()['em']
    out = dict(f_curve=f_res['dynamic'], f_adp=f_res['adaptive'], e_curve=e_res['curve'],
               e_adp=e_res['adp'], sm=sm.get_results()['sm'], wfm=wfm.get_results()['wfm'],
               mae=mae.get_results()['mae'])
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
