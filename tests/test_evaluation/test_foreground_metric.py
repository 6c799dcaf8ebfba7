"""ForegroundMetric against pysodmetrics' own loop over 8-bit PNG files; ignore region; IoU.

The reference numbers are computed here the way the salient-object literature computes them:
each map is written as an 8-bit PNG, read back with cv2 and fed to pysodmetrics' evaluators
(``Fmeasure``, ``Emeasure``, ``Smeasure``, ``WeightedFmeasure``, ``MAE``), independently of the
metric's own code path (which uses ``FmeasureV2`` and its own quantisation and ignore filling).
"""
import os
import warnings
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import py_sod_metrics as psm
import pytest

from eval_samples import foreground_sample
from mmquerymeld.evaluation import ForegroundMetric

SOD_KEYS = ('maxF', 'meanF', 'adpF', 'maxEm', 'meanEm', 'adpEm', 'Sm', 'wFm', 'MAE')


def _run(samples, **kwargs) -> Dict[str, float]:
    metric = ForegroundMetric(**kwargs)
    metric.dataset_meta = {}
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def _png8(prob: np.ndarray) -> np.ndarray:
    """What an 8-bit PNG of a probability map holds: round(255 * p)."""
    return np.rint(prob.astype(np.float64) * 255).astype(np.uint8)


def _pysod_loop(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], folder) -> Dict[str, float]:
    """pysodmetrics' documented evaluation loop over (prediction, gt) 8-bit PNG files."""
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # Fmeasure announces FmeasureV2
        fm = psm.Fmeasure()
    em, sm, wfm, mae = psm.Emeasure(), psm.Smeasure(), psm.WeightedFmeasure(), psm.MAE()
    for i, pair in enumerate(pairs):
        paths = [os.path.join(folder, f'{i}_{kind}.png') for kind in ('pred', 'gt')]
        for path, img in zip(paths, pair):
            assert img.dtype == np.uint8 and cv2.imwrite(path, img)
        pred, gt = (cv2.imread(path, cv2.IMREAD_GRAYSCALE) for path in paths)
        for evaluator in (fm, em, sm, wfm, mae):
            evaluator.step(pred=pred, gt=gt)
    f, e = fm.get_results()['fm'], em.get_results()['em']
    return dict(maxF=f['curve'].max(), meanF=f['curve'].mean(), adpF=f['adp'],
                maxEm=e['curve'].max(), meanEm=e['curve'].mean(), adpEm=e['adp'],
                Sm=sm.get_results()['sm'], wFm=wfm.get_results()['wfm'],
                MAE=mae.get_results()['mae'])


def _assert_same(res: Dict[str, float], expected: Dict[str, float]) -> None:
    for key in SOD_KEYS:  # the metric rounds to 6 decimals
        assert res[f'foreground/{key}'] == pytest.approx(float(expected[key]), abs=1e-6), key


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _random_world(seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(gt in {0, 1}, float32 prob) pairs; no prediction spans [0, 1] (none is normalised)."""
    rng = np.random.default_rng(seed)
    h, w = 24, 30
    pairs = []
    for i in range(4):  # blobs, predictions in a narrow random range
        gt = _ellipse(h, w, rng.uniform(6, 18), rng.uniform(8, 22), rng.uniform(3, 8),
                      rng.uniform(3, 10))
        lo, span = rng.uniform(0.05, 0.4), rng.uniform(0.2, 0.5)
        prob = lo + span * (0.35 * gt + 0.65 * rng.random((h, w)))  # overlapping scores
        pairs.append((gt.astype(np.int64), prob.astype(np.float32)))
    pairs.append((np.zeros((h, w), np.int64),  # empty ground truth
                  (0.1 + 0.3 * rng.random((h, w))).astype(np.float32)))
    pairs.append((np.ones((h, w), np.int64),  # all foreground
                  (0.5 + 0.4 * rng.random((h, w))).astype(np.float32)))
    pairs.append((_ellipse(h, w, 12, 15, 5, 7).astype(np.int64),  # constant prediction
                  np.full((h, w), 0.4, np.float32)))
    return pairs


def test_equals_pysodmetrics_loop_over_png_files(tmp_path):
    pairs = _random_world()
    assert all(p.min() > 0 and p.max() < 1 for _, p in pairs)  # the library must normalise
    res = _run([foreground_sample(gt, prob) for gt, prob in pairs])
    expected = _pysod_loop([(_png8(p), (gt * 255).astype(np.uint8)) for gt, p in pairs],
                           tmp_path / 'all')
    _assert_same(res, expected)
    # the empty ground truth alone (F-measure 0, weighted F 0 by the library's convention)
    gt, prob = pairs[4]
    _assert_same(_run([foreground_sample(gt, prob)]),
                 _pysod_loop([(_png8(prob), np.zeros_like(gt, np.uint8))], tmp_path / 'empty'))
    # beta2 and alpha reach the library: other values change the numbers
    other = _run([foreground_sample(gt, prob) for gt, prob in pairs[:4]], beta2=1.0, alpha=0.9)
    base = _run([foreground_sample(gt, prob) for gt, prob in pairs[:4]])
    assert base['foreground/maxF'] < 0.99  # not a trivially separable world
    assert other['foreground/maxF'] != pytest.approx(base['foreground/maxF'], abs=1e-4)
    assert other['foreground/Sm'] != pytest.approx(base['foreground/Sm'], abs=1e-4)


def test_ignore_region(tmp_path):
    gt, prob = _random_world(seed=1)[0]
    h, w = gt.shape
    # 1. ignored border bands (e.g. padding) are cropped away: exactly the library on the crop
    band = gt.copy()
    band[:3] = 255
    band[:, w - 2:] = 255
    res = _run([foreground_sample(band, prob)])
    crop = (slice(3, h), slice(0, w - 2))
    _assert_same(res, _pysod_loop([(_png8(prob[crop]), (gt[crop] * 255).astype(np.uint8))],
                                  tmp_path / 'band'))
    # the prediction under the ignored pixels plays no part
    for fill in (0.0, 1.0):
        assert _run([foreground_sample(band, np.where(band == 255, fill, prob))]) == res
    # 2. ignored pixels inside: gt background, prediction the lowest valid value
    rng = np.random.default_rng(2)
    inner = gt.copy()
    holes = rng.random(gt.shape) < 0.15
    holes[[0, -1]] = False  # keep the bounding box of the valid pixels the whole image
    inner[holes] = 255
    res = _run([foreground_sample(inner, prob)])
    pred8 = _png8(prob)
    pred8[holes] = pred8[~holes].min()
    gt8 = np.where(holes, 0, gt * 255).astype(np.uint8)
    _assert_same(res, _pysod_loop([(pred8, gt8)], tmp_path / 'inner'))
    for fill in (0.0, 1.0):
        assert _run([foreground_sample(inner, np.where(holes, fill, prob))]) == res
    # ... which differs from counting them as predicted (the prediction would matter)
    as_is = _pysod_loop([(_png8(prob), gt8)], tmp_path / 'as_is')
    assert res['foreground/MAE'] != pytest.approx(float(as_is['MAE']), abs=1e-4)
    # 3. an image without valid pixels is not evaluated
    void = np.full_like(gt, 255)
    assert _run([foreground_sample(void, prob), foreground_sample(gt, prob)]) == \
        _run([foreground_sample(gt, prob)])
    assert ForegroundMetric().evaluate(0) == {}


def test_iou_of_the_binary_map_hand_computed():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[0:2, 0:2] = 1
    gt[3, 3] = 255  # ignored
    prob = np.full((4, 4), 0.2)
    prob[0:2, 0:2] = 0.8
    prob[1, 1] = 0.4  # a weak foreground pixel
    prob[2, 2] = 0.6  # a false positive
    prob[3, 3] = 1.0  # ignored: must not count
    res = _run([foreground_sample(gt, prob, binary=(prob >= 0.5).astype(np.int64))])
    # binary: 3 TP + 1 FP (the ignored pixel excluded): fg IoU 3/5, bg IoU 10/12
    assert res['foreground/fgIoU'] == pytest.approx(0.6, abs=1e-6)
    assert res['foreground/mIoU'] == pytest.approx((0.6 + 10 / 12) / 2, abs=1e-6)
    # two images, no binary map given: prob >= 0.5 -> a perfect, b empty -> fgIoU (1 + 0) / 2
    gt[3, 3] = 0
    a, b = np.where(gt == 1, 0.8, 0.2), np.where(gt == 1, 0.1, 0.0)
    res = _run([foreground_sample(gt, a), foreground_sample(gt, b)])
    assert res['foreground/fgIoU'] == pytest.approx(0.5)
    # both maps rank every foreground pixel first: after normalisation both are perfect
    assert res['foreground/maxF'] == pytest.approx(1.0)
    assert res['foreground/MAE'] == pytest.approx(0.0)


def test_errors_name_the_image():
    gt = np.full((4, 4), 2, dtype=np.int64)
    with pytest.raises(ValueError, match='g.png'):
        _run([foreground_sample(gt, np.zeros((4, 4)), img_path='g.png')])
    with pytest.raises(ValueError, match='h.png'):
        _run([foreground_sample(np.zeros((4, 4), np.int64), np.zeros((3, 4)), img_path='h.png')])
    with pytest.raises(ValueError, match='i.png'):
        _run([foreground_sample(np.zeros((4, 4), np.int64), np.full((4, 4), 1.5),
                                img_path='i.png')])
    with pytest.raises(ValueError, match='num_thresholds'):
        ForegroundMetric(num_thresholds=100)
