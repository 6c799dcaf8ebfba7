"""ReferringMetric: cIoU / mIoU / Prec@X on crafted masks."""
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from eval_samples import referring_case
from mmquerymeld.evaluation import ReferringMetric


def _run(samples):
    metric = ReferringMetric()
    metric.dataset_meta = {}
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def test_referring_hand_computed():
    res = _run(referring_case())
    # I = 8, 4, 9; U = 8, 12, 12; IoU = 1, 1/3, 3/4
    assert res['referring/cIoU'] == pytest.approx(100 * 21 / 32, abs=1e-3)
    assert res['referring/mIoU'] == pytest.approx(100 * (1 + 1 / 3 + 0.75) / 3, abs=1e-3)
    assert res['referring/Prec@0.5'] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert res['referring/Prec@0.7'] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert res['referring/Prec@0.9'] == pytest.approx(100 / 3, abs=1e-3)


def test_referring_accepts_data_samples_directly():
    metric = ReferringMetric(prec_thresholds=(0.3, ))
    metric.dataset_meta = {}
    metric.process({}, referring_case())
    res = metric.evaluate(2)
    assert res['referring/Prec@0.3'] == pytest.approx(100.0)


def test_count_mismatch_names_the_image():
    s = referring_case()[0]
    s.pred_instances = InstanceData(masks=torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='r1.png'):
        _run([s])


def test_shape_mismatch_names_the_image():
    s = referring_case()[1]
    s.pred_instances = InstanceData(masks=torch.zeros(1, 5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match='r2.png'):
        _run([s])


def test_missing_field_names_image_and_field():
    s = DetDataSample(metainfo=dict(img_path='none.png', ori_shape=(4, 4)))
    s.gt_instances = InstanceData(masks=torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(KeyError, match=r'none.png.*pred_instances.masks'):
        _run([s])


def test_no_samples_returns_empty_dict():
    metric = ReferringMetric()
    assert metric.evaluate(0) == {}
