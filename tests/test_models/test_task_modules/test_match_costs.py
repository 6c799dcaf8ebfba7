"""Tests of the validity-gated match costs (mask costs by mask_valid, box costs by box_valid)."""
import pytest
import torch
from mmdet.models.task_modules.assigners.match_cost import (BBoxL1Cost, CrossEntropyLossCost,
                                                            DiceCost, IoUCost)
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from mmquerymeld.models.task_modules import (GatedBBoxL1Cost, GatedCrossEntropyLossCost,
                                             GatedDiceCost, GatedIoUCost)


def _instances(valid):
    torch.manual_seed(0)
    pred = InstanceData(scores=torch.randn(5, 3), masks=torch.randn(5, 64))
    gt = InstanceData(labels=torch.tensor([0, 1, 2]), masks=(torch.rand(3, 64) > 0.5).float(),
                      mask_valid=torch.tensor(valid))
    return pred, gt


@pytest.mark.parametrize('gated_cls,base_cls,kwargs', [
    (GatedCrossEntropyLossCost, CrossEntropyLossCost, dict(use_sigmoid=True, weight=5.0)),
    (GatedDiceCost, DiceCost, dict(pred_act=True, eps=1.0, weight=5.0)),
])
def test_gated_cost_zero_for_box_only_columns(gated_cls, base_cls, kwargs):
    pred, gt = _instances([True, False, True])
    gated = TASK_UTILS.build(dict(type=gated_cls.__name__, **kwargs))
    assert isinstance(gated, gated_cls)
    cost = gated(pred, gt)
    reference = base_cls(**kwargs)(pred, gt)
    assert cost.shape == (5, 3)
    assert torch.all(cost[:, 1] == 0)
    assert torch.allclose(cost[:, [0, 2]], reference[:, [0, 2]])
    assert cost[:, 0].abs().sum() > 0


def test_gated_cost_all_zero_without_masks_or_valid_gt():
    pred, gt = _instances([False, False, False])
    assert torch.count_nonzero(GatedDiceCost(pred_act=True)(pred, gt)) == 0
    pred_no_mask = InstanceData(scores=torch.randn(5, 3))
    _, gt = _instances([True, True, True])
    cost = GatedCrossEntropyLossCost()(pred_no_mask, gt)
    assert cost.shape == (5, 3) and torch.count_nonzero(cost) == 0


def test_missing_mask_valid_means_all_valid():
    pred, gt = _instances([True, True, True])
    reference = DiceCost(pred_act=True)(pred, gt)
    del gt.mask_valid
    assert torch.allclose(GatedDiceCost(pred_act=True)(pred, gt), reference)


# ------------------------------------------------------------------ box costs gated by box_valid
def _box_instances(box_valid=None):
    torch.manual_seed(1)
    xy = torch.rand(5, 2) * 40
    pred = InstanceData(bboxes=torch.cat([xy, xy + 10 + torch.rand(5, 2) * 10], 1))
    gxy = torch.rand(3, 2) * 40
    gt = InstanceData(labels=torch.tensor([0, 1, 2]),
                      bboxes=torch.cat([gxy, gxy + 5 + torch.rand(3, 2) * 20], 1))
    if box_valid is not None:
        gt.box_valid = torch.tensor(box_valid)
    return pred, gt


@pytest.mark.parametrize('gated_cls,base_cls,kwargs', [
    (GatedBBoxL1Cost, BBoxL1Cost, dict(box_format='xywh', weight=5.0)),
    (GatedIoUCost, IoUCost, dict(iou_mode='giou', weight=2.0)),
])
def test_gated_box_cost_zero_for_box_invalid_columns(gated_cls, base_cls, kwargs):
    meta = dict(img_shape=(64, 64))
    pred, gt = _box_instances([True, False, True])
    gated = TASK_UTILS.build(dict(type=gated_cls.__name__, **kwargs))
    assert isinstance(gated, gated_cls)
    cost, reference = gated(pred, gt, meta), base_cls(**kwargs)(pred, gt, meta)
    assert cost.shape == (5, 3) and torch.all(cost[:, 1] == 0)
    assert torch.equal(cost[:, [0, 2]], reference[:, [0, 2]]) and reference[:, 1].abs().sum() > 0
    # without box_valid every column is a box column
    pred, gt = _box_instances()
    assert torch.equal(gated(pred, gt, meta), base_cls(**kwargs)(pred, gt, meta))


def test_matcher_builds_mmdet_costs_as_their_gated_versions():
    from mmquerymeld.models.losses import PointSampledHungarianMatcher
    assigner = dict(type='HungarianAssigner', match_costs=[
        dict(type='FocalLossCost', weight=2.0), dict(type='BBoxL1Cost', box_format='xywh'),
        dict(type='mmdet.IoUCost', iou_mode='giou'), dict(type='CrossEntropyLossCost',
                                                          use_sigmoid=True),
        dict(type='DiceCost', pred_act=True)])
    matcher = PointSampledHungarianMatcher(assigner, num_points=16)
    names = [type(c).__name__ for c in matcher.assigner.match_costs]
    assert names == ['FocalLossCost', 'GatedBBoxL1Cost', 'GatedIoUCost',
                     'GatedCrossEntropyLossCost', 'GatedDiceCost']
    assert assigner['match_costs'][1]['type'] == 'BBoxL1Cost'  # the config is not modified
