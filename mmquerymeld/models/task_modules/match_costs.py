"""Match costs gated per ground truth: mask costs by ``mask_valid``, box costs by ``box_valid``.

The mask costs are mmdet's ``CrossEntropyLossCost`` and ``DiceCost`` (the Mask2Former / Mask DINO
matcher); a ground truth whose mask is not annotated (detection data without synthetic masks)
gets a mask cost of 0 in its column, so its matching is decided by the class and box costs alone.
The box costs are mmdet's ``BBoxL1Cost`` and ``IoUCost``; a ground truth without box supervision
(semantic-task targets, panoptic stuff) gets a box cost of 0 in its column. Mask DINO's matcher
fills those columns with the mean of the thing columns instead: a constant column does not change
a one-to-one assignment either, and 0 keeps the column independent of the other targets.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.task_modules.assigners.match_cost import (BBoxL1Cost, CrossEntropyLossCost,
                                                            DiceCost, IoUCost)
from mmdet.registry import TASK_UTILS


def _gated_mask_cost(base_cost, pred_instances: InstanceData,
                     gt_instances: InstanceData) -> Tensor:
    """Evaluate a mask cost on the mask-valid gt columns only, 0 elsewhere.

    Args:
        base_cost: A callable ``(pred_instances, gt_instances) -> Tensor [Q, n]`` (the parent
            class's ``__call__``).
        pred_instances: Needs ``scores`` [Q, K]; ``masks`` [Q, P] (point-sampled logits) may be
            absent, in which case the cost is 0 everywhere.
        gt_instances: ``labels`` [N], ``masks`` [N, P] (point-sampled {0, 1}) and optionally
            ``mask_valid`` [N] bool (missing means all valid).

    Returns:
        Tensor: Cost matrix [Q, N] (already multiplied by the cost weight).
    """
    num_preds, num_gts = len(pred_instances), len(gt_instances)
    device = gt_instances.labels.device
    cost = torch.zeros((num_preds, num_gts), dtype=torch.float32, device=device)
    if 'masks' not in pred_instances or 'masks' not in gt_instances or num_gts == 0:
        return cost
    if 'mask_valid' in gt_instances:
        valid = gt_instances.mask_valid.to(device=device, dtype=torch.bool)
    else:
        valid = torch.ones(num_gts, dtype=torch.bool, device=device)
    if not bool(valid.any()):
        return cost
    valid_gt = InstanceData(masks=gt_instances.masks[valid])
    cost[:, valid] = base_cost(pred_instances=InstanceData(masks=pred_instances.masks),
                               gt_instances=valid_gt).float()
    return cost


@TASK_UTILS.register_module()
class GatedCrossEntropyLossCost(CrossEntropyLossCost):
    """mmdet's sigmoid BCE mask cost on sampled points, 0 for gt columns without a mask.

    Args:
        use_sigmoid (bool): As in ``CrossEntropyLossCost``; must be True. Defaults to True.
        weight (float): Cost weight. Defaults to 1.
    """

    def _binary_cross_entropy(self, cls_pred: Tensor, gt_labels: Tensor) -> Tensor:
        """The parent's cost with one softplus instead of two BCE passes (same values).

        ``BCE(x, 1) = softplus(-x) = softplus(x) - x``, so
        ``sum_p BCE(x, 1) g + BCE(x, 0) (1 - g) = sum_p softplus(x) - x . g``.

        Args:
            cls_pred: Mask logits [Q, P] (or [Q, 1, P]).
            gt_labels: Binary targets [N, P].

        Returns:
            Tensor: Mean BCE over the points [Q, N] (unweighted).
        """
        cls_pred = cls_pred.flatten(1).float()
        gt_labels = gt_labels.flatten(1).float()
        cost = F.softplus(cls_pred).sum(1, keepdim=True) - torch.einsum(
            'nc,mc->nm', cls_pred, gt_labels)
        return cost / cls_pred.shape[1]

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Compute the gated cost.

        Args:
            pred_instances: ``masks`` [Q, P] mask logits at the sampled points.
            gt_instances: ``masks`` [N, P] in {0, 1}, ``mask_valid`` [N] bool.
            img_meta: Unused.

        Returns:
            Tensor: Cost matrix [Q, N].
        """
        return _gated_mask_cost(super().__call__, pred_instances, gt_instances)


@TASK_UTILS.register_module()
class GatedDiceCost(DiceCost):
    """mmdet's dice mask cost on sampled points, 0 for gt columns without a mask.

    Args:
        pred_act (bool): Apply sigmoid to the predictions. Defaults to False.
        eps (float): Smoothing term. Defaults to 1e-3 (Mask2Former uses 1.0).
        naive_dice (bool): First-power denominator. Defaults to True.
        weight (float): Cost weight. Defaults to 1.
    """

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Compute the gated cost.

        Args:
            pred_instances: ``masks`` [Q, P] mask logits (or probabilities) at sampled points.
            gt_instances: ``masks`` [N, P] in {0, 1}, ``mask_valid`` [N] bool.
            img_meta: Unused.

        Returns:
            Tensor: Cost matrix [Q, N].
        """
        return _gated_mask_cost(super().__call__, pred_instances, gt_instances)


def _gate_box_columns(cost: Tensor, gt_instances: InstanceData) -> Tensor:
    """Zero the cost columns of gt with ``box_valid`` False (missing: all valid)."""
    if 'box_valid' not in gt_instances or cost.numel() == 0:
        return cost
    valid = gt_instances.box_valid.to(device=cost.device, dtype=torch.bool)
    return cost.masked_fill(~valid[None], 0.0)


class _BoxGatedCost:
    """Mixin for an mmdet box cost: the columns of gt with ``box_valid`` False become 0."""

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Compute the gated cost.

        Args:
            pred_instances: ``bboxes`` [Q, 4] xyxy pixels.
            gt_instances: ``bboxes`` [N, 4] xyxy pixels, optional ``box_valid`` [N] bool.
            img_meta: As the base cost (``img_shape`` for the L1 cost).

        Returns:
            Tensor: Cost matrix [Q, N].
        """
        return _gate_box_columns(super().__call__(pred_instances, gt_instances, img_meta),
                                 gt_instances)


@TASK_UTILS.register_module()
class GatedBBoxL1Cost(_BoxGatedCost, BBoxL1Cost):
    """mmdet's L1 box cost, 0 for gt columns with ``box_valid`` False.

    Args:
        box_format (str): ``'xyxy'`` or ``'xywh'`` (cxcywh), as ``BBoxL1Cost``.
        weight (float): Cost weight. Defaults to 1.
    """


@TASK_UTILS.register_module()
class GatedIoUCost(_BoxGatedCost, IoUCost):
    """mmdet's (G)IoU box cost, 0 for gt columns with ``box_valid`` False.

    Args:
        iou_mode (str): ``'iou'`` or ``'giou'``, as ``IoUCost``.
        weight (float): Cost weight. Defaults to 1.
    """
