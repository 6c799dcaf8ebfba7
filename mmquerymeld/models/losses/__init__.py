"""Training criterion of QueryMeldNet: matching, class / box / mask losses, denoising."""
from .denoising_losses import DenoisingLossMixin, dn_match_indices
from .matching import PointSampledHungarianMatcher
from .point_mask_loss import PointSampledMaskLoss
from .querymeld_criterion import QueryMeldCriterion

__all__ = [
    'QueryMeldCriterion', 'PointSampledHungarianMatcher', 'PointSampledMaskLoss',
    'DenoisingLossMixin', 'dn_match_indices'
]
