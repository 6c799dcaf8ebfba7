"""ForegroundMetric and the S-measure / F-measure functions on hand-computed cases."""
import numpy as np
import pytest

from eval_samples import foreground_sample
from mmquerymeld.evaluation import ForegroundMetric
from mmquerymeld.evaluation.functional import f_measure_curve, s_measure


def _run(samples):
    metric = ForegroundMetric()
    metric.dataset_meta = {}
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def test_s_measure_hand_computed():
    gt = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    pred = np.array([[1, .5, 0], [0, 0, 0], [0, 0, 0]])
    # object: fg values (1, .5, 0): mean .5, std .5 -> 1 / 1.75; bg all right -> 1
    s_obj = (1 / 3) * (1 / 1.75) + (2 / 3) * 1
    # region: split at (x=1, y=1); quadrant SSIMs 1, 0.64, 0, 1 weighted 1/9, 2/9, 2/9, 4/9
    s_reg = (1 + 2 * 0.64 + 0 + 4) / 9
    assert s_measure(pred, gt) == pytest.approx(0.5 * s_obj + 0.5 * s_reg, abs=1e-6)


def test_s_measure_degenerate_cases():
    assert s_measure(np.full((3, 3), .25), np.zeros((3, 3), bool)) == pytest.approx(0.75)
    assert s_measure(np.full((3, 3), .7), np.ones((3, 3), bool)) == pytest.approx(0.7)
    gt = np.zeros((6, 6), bool)
    gt[1:4, 2:5] = True
    assert s_measure(gt.astype(float), gt) == pytest.approx(1.0, abs=1e-9)


def test_f_measure_curve_thresholds():
    pred = np.array([0.8, 0.8, 0.8, 0.4, 0.6, 0.2, 0.2])
    gt = np.array([1, 1, 1, 1, 0, 0, 0], dtype=bool)
    curve = f_measure_curve(pred, gt)
    assert curve.shape == (256, )
    # threshold 180/255: 3 TP, 0 FP -> P 1, R .75 -> 1.3 * .75 / (.3 + .75)
    assert curve[180] == pytest.approx(1.3 * .75 / 1.05)
    # threshold 120/255: 3 TP + 1 FP -> P = R = .75 -> F = .75
    assert curve[120] == pytest.approx(0.75)
    assert curve[255] == 0.0  # nothing predicted


def test_foreground_metric_hand_computed():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[0:2, 0:2] = 1
    gt[3, 3] = 255  # ignored
    prob = np.full((4, 4), 0.2)
    prob[0:2, 0:2] = 0.8
    prob[1, 1] = 0.4  # a weak foreground pixel
    prob[2, 2] = 0.6  # a false positive
    prob[3, 3] = 1.0  # ignored: must not count
    res = _run([foreground_sample(gt, prob, binary=(prob >= 0.5).astype(np.int64))])
    assert res['foreground/MAE'] == pytest.approx(3.8 / 15, abs=1e-6)
    assert res['foreground/maxF'] == pytest.approx(1.3 * .75 / 1.05, abs=1e-6)
    # binary: 3 TP + 1 FP (the ignored pixel excluded): fg IoU 3/5, bg IoU 10/12
    assert res['foreground/fgIoU'] == pytest.approx(0.6, abs=1e-6)
    assert res['foreground/mIoU'] == pytest.approx((0.6 + 10 / 12) / 2, abs=1e-6)
    # S-measure of the same map, computed independently by the (hand-verified) function, with
    # ignored pixels set to background in both maps as the metric documents
    keep = gt != 255
    expected_sm = s_measure(np.where(keep, prob, 0.0), np.where(keep, gt, 0) == 1)
    assert res['foreground/Sm'] == pytest.approx(expected_sm, abs=1e-6)
    assert 0 < res['foreground/Sm'] < 1


def test_max_f_averages_curves_before_the_max():
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[0:2, 0:2] = 1
    a = np.where(gt == 1, 0.8, 0.2)  # perfect for thresholds 52..204
    b = np.where(gt == 1, 0.1, 0.0)  # perfect for thresholds 1..25
    res = _run([foreground_sample(gt, a), foreground_sample(gt, b)])
    # thresholds 1..25: a predicts all 16 px (P .25, R 1 -> F .325 / 1.075), b is perfect
    assert res['foreground/maxF'] == pytest.approx((0.325 / 1.075 + 1) / 2, abs=1e-6)
    # no binary map given: prob >= 0.5 -> a perfect, b empty -> fgIoU (1 + 0) / 2
    assert res['foreground/fgIoU'] == pytest.approx(0.5)


def test_bad_gt_values_and_shapes_name_the_image():
    gt = np.full((4, 4), 2, dtype=np.int64)
    with pytest.raises(ValueError, match='g.png'):
        _run([foreground_sample(gt, np.zeros((4, 4)), img_path='g.png')])
    with pytest.raises(ValueError, match='h.png'):
        _run([foreground_sample(np.zeros((4, 4), np.int64), np.zeros((3, 4)), img_path='h.png')])


def test_no_samples_returns_empty_dict():
    assert ForegroundMetric().evaluate(0) == {}
