"""Matching utilities of QueryMeldNet: mask-validity-gated match costs and gt preparation."""
from .gt_targets import batch_shape, masks_to_tensor, prepare_gt_targets
from .match_costs import GatedCrossEntropyLossCost, GatedDiceCost

__all__ = [
    'GatedCrossEntropyLossCost', 'GatedDiceCost', 'prepare_gt_targets', 'masks_to_tensor',
    'batch_shape'
]
