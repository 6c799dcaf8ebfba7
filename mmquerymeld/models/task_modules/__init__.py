"""Matching utilities of QueryMeldNet: validity-gated match costs and gt preparation."""
from .gt_targets import (BOX_SUPERVISION, GtTargets, batch_shape, gt_box_valid, masks_to_tensor,
                         prepare_batch_gt_targets, prepare_gt_targets)
from .point_sampling import sample_mask_points, sample_shared_points
from .match_costs import (GatedBBoxL1Cost, GatedCrossEntropyLossCost, GatedDiceCost,
                          GatedIoUCost)

__all__ = [
    'GatedCrossEntropyLossCost', 'GatedDiceCost', 'GatedBBoxL1Cost', 'GatedIoUCost',
    'GtTargets', 'prepare_gt_targets', 'prepare_batch_gt_targets', 'gt_box_valid',
    'masks_to_tensor', 'batch_shape', 'BOX_SUPERVISION', 'sample_mask_points',
    'sample_shared_points'
]
