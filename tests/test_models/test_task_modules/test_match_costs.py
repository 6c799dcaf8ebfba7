"""Tests of the mask-validity-gated match costs."""
import pytest
import torch
from mmdet.models.task_modules.assigners.match_cost import CrossEntropyLossCost, DiceCost
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from mmquerymeld.models.task_modules import GatedCrossEntropyLossCost, GatedDiceCost


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
