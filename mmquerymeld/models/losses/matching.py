"""Hungarian matching of QueryMeldNet's predictions to the unified targets, blind to query type.

Paper section 3.2: "Hungarian matching is applied across all object queries, without
differentiating between query types". Costs are those of the configured mmdet assigner (Mask
DINO's by default); the mask costs are evaluated on points sampled uniformly at random, the
same points for predictions and targets (Mask2Former's matcher). Ground truth without an
annotated mask (``mask_valid`` False) gets no mask cost, ground truth without box supervision
(``box_valid`` False: semantic-task targets, panoptic stuff) no box cost (``Gated*Cost`` in
``task_modules``).
"""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType
from mmengine.structures import InstanceData
from torch import Tensor

from mmquerymeld.models.task_modules import (GtTargets, batch_shape, sample_mask_points,
                                              sample_shared_points)

#: Per image, ``(query_idx [M], gt_idx [M])`` long tensors of the matched pairs.
MatchIndices = Tuple[Tensor, Tensor]

#: Mask DINO's matcher weights: class 4 (focal), box L1 5, GIoU 2, mask BCE 5, dice 5.
DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', alpha=0.25, gamma=2.0, weight=4.0),
        dict(type='GatedBBoxL1Cost', box_format='xywh', weight=5.0),
        dict(type='GatedIoUCost', iou_mode='giou', weight=2.0),
        dict(type='GatedCrossEntropyLossCost', use_sigmoid=True, weight=5.0),
        dict(type='GatedDiceCost', pred_act=True, eps=1.0, weight=5.0),
    ])

#: mmdet's box and mask costs and their gated subclasses (identical when every gt has both).
GATED_COSTS = {
    'BBoxL1Cost': 'GatedBBoxL1Cost',
    'IoUCost': 'GatedIoUCost',
    'CrossEntropyLossCost': 'GatedCrossEntropyLossCost',
    'DiceCost': 'GatedDiceCost',
}


def gated_assigner_cfg(assigner: ConfigType) -> ConfigType:
    """The assigner config with mmdet's box / mask costs replaced by their gated subclasses.

    Args:
        assigner: A ``HungarianAssigner``-like config with ``match_costs``.

    Returns:
        A deep copy in which ``BBoxL1Cost`` / ``IoUCost`` / ``CrossEntropyLossCost`` /
        ``DiceCost`` (with or without the ``mmdet.`` scope) are their ``Gated*`` versions.
    """
    assigner = copy.deepcopy(assigner)
    costs = assigner.get('match_costs') if hasattr(assigner, 'get') else None
    for cost in costs if isinstance(costs, (list, tuple)) else []:
        name = str(cost.get('type', '')).split('.')[-1]
        if name in GATED_COSTS:
            cost['type'] = GATED_COSTS[name]
    return assigner


@TASK_UTILS.register_module()
class PointSampledHungarianMatcher:
    """One-to-one matching of one image's predictions with its prepared targets.

    Args:
        assigner: A ``TASK_UTILS`` assigner with the ``HungarianAssigner`` interface
            (``assign(pred_instances, gt_instances, img_meta)``). Defaults to
            ``DEFAULT_ASSIGNER``. mmdet's box and mask costs in it are built as their gated
            subclasses (:func:`gated_assigner_cfg`), so ``box_valid`` / ``mask_valid`` apply
            whatever the config names.
        num_points: Uniform random points on which the mask costs are evaluated.
    """

    def __init__(self, assigner: Optional[ConfigType] = None, num_points: int = 12544) -> None:
        if num_points <= 0:
            raise ValueError(f'PointSampledHungarianMatcher: num_points must be positive, got '
                             f'{num_points}')
        self.assigner = TASK_UTILS.build(gated_assigner_cfg(assigner or DEFAULT_ASSIGNER))
        self.num_points = int(num_points)

    @torch.no_grad()
    def __call__(self, pred_logits: Tensor, pred_boxes: Tensor, pred_masks: Optional[Tensor],
                 target: GtTargets, img_meta: dict) -> MatchIndices:
        """Match one image.

        Args:
            pred_logits: Class logits ``[Q, K]`` (sigmoid space, query . text).
            pred_boxes: Boxes ``[Q, 4]``, cxcywh normalised by the batch frame.
            pred_masks: Mask logits ``[Q, h, w]`` at 1/4 of the batch frame, or None.
            target: Prepared gt (``prepare_gt_targets``): ``labels`` [N], ``bboxes`` [N, 4] xyxy
                pixels (clamped), ``mask_valid`` / ``box_valid`` [N] bool, ``valid_masks``
                [Nv, H, W] bool.
            img_meta: Needs ``batch_input_shape`` (or ``pad_shape`` / ``img_shape``).

        Returns:
            tuple[Tensor, Tensor]: ``query_idx`` [M] and ``gt_idx`` [M] (long), ordered by query
            index; M = min(Q, N).
        """
        device = pred_logits.device
        num_gt = len(target)
        if num_gt == 0 or pred_logits.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        H, W = batch_shape(img_meta)
        factor = pred_boxes.new_tensor([W, H, W, H]).float()
        pred = InstanceData(
            scores=pred_logits.float(),
            bboxes=bbox_cxcywh_to_xyxy(pred_boxes.float()) * factor)
        gt = InstanceData(labels=target.labels, bboxes=target.bboxes, mask_valid=target.mask_valid,
                          box_valid=target.box_valid)
        valid = target.mask_valid
        if pred_masks is not None and bool(valid.any()):
            # Mask2Former matcher: the same uniform random points for predictions and targets
            # (queries as grid_sample channels; targets read in place, no float mask copies)
            coords = torch.rand((self.num_points, 2), device=device)
            pred.masks = sample_shared_points(pred_masks.float(), coords)
            gt_points = pred.masks.new_zeros((num_gt, self.num_points))
            num_valid = target.valid_masks.shape[0]
            gt_points[valid] = sample_mask_points(
                target.valid_masks, torch.arange(num_valid, device=device),
                coords[None].expand(num_valid, -1, -1))
            gt.masks = gt_points
        assign_result = self.assigner.assign(pred, gt, img_meta=dict(img_meta, img_shape=(H, W)))
        query_idx = torch.nonzero(assign_result.gt_inds > 0, as_tuple=False).squeeze(1)
        gt_idx = assign_result.gt_inds[query_idx] - 1
        return query_idx.to(device), gt_idx.to(device)

    def match_level(self, level: dict, targets: Sequence[InstanceData],
                    batch_img_metas: Sequence[dict]) -> List[MatchIndices]:
        """Match every image of one prediction level.

        Args:
            level: ``pred_logits`` [B, Q, K], ``pred_boxes`` [B, Q, 4], optional ``pred_masks``
                [B, Q, h, w].
            targets: B prepared gt.
            batch_img_metas: B image metas.

        Returns:
            list[MatchIndices]: per image ``(query_idx, gt_idx)``.
        """
        logits, boxes = level['pred_logits'], level['pred_boxes']
        masks = level.get('pred_masks')
        return [
            self(logits[b], boxes[b], None if masks is None else masks[b], targets[b],
                 batch_img_metas[b]) for b in range(len(targets))
        ]
