"""Mask losses of matched queries on importance-sampled points (PointRend / Mask2Former).

Paper section 3.3, eq. (1), L_m: BCE + dice between each matched query's mask logits and its
ground-truth mask, evaluated on ``num_points`` points per mask chosen by uncertainty
(Kirillov et al., PointRend; as in mmdet's Mask2Former head). Only ground truth whose mask is
annotated (``mask_valid`` True) is supervised.
"""
import copy
from typing import Dict, Optional, Sequence

import torch
from mmcv.ops import point_sample
from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmquerymeld.models.task_modules import sample_mask_points

from .matching import MatchIndices

DEFAULT_LOSS_MASK = dict(
    type='CrossEntropyLoss', use_sigmoid=True, reduction='mean', loss_weight=5.0)
DEFAULT_LOSS_DICE = dict(
    type='DiceLoss', use_sigmoid=True, activate=True, reduction='mean', naive_dice=True,
    eps=1.0, loss_weight=5.0)


@MODELS.register_module()
class PointSampledMaskLoss(BaseModule):
    """BCE and dice of matched queries on uncertainty-sampled points.

    Args:
        loss_mask: Point-wise mask loss. Defaults to sigmoid BCE, 5.0.
        loss_dice: Mask overlap loss. Defaults to dice (eps 1), 5.0.
        num_points: Points sampled per mask. Defaults to 12544.
        oversample_ratio: Oversampling before uncertainty selection. Defaults to 3.0.
        importance_sample_ratio: Share of points chosen by uncertainty. Defaults to 0.75.
        chunk_size: Masks whose points are selected at once (bounds the oversampled
            temporaries; the selection itself does not depend on it). Defaults to 64.
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 loss_mask: Optional[ConfigType] = None,
                 loss_dice: Optional[ConfigType] = None,
                 num_points: int = 12544,
                 oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75,
                 chunk_size: int = 64,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.loss_mask = MODELS.build(copy.deepcopy(loss_mask or DEFAULT_LOSS_MASK))
        self.loss_dice = MODELS.build(copy.deepcopy(loss_dice or DEFAULT_LOSS_DICE))
        if num_points <= 0:
            raise ValueError(f'num_points must be positive, got {num_points}')
        self.num_points = int(num_points)
        self.oversample_ratio = float(oversample_ratio)
        self.importance_sample_ratio = float(importance_sample_ratio)
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
        self.chunk_size = int(chunk_size)

    def forward(self, masks: Tensor, targets: Sequence[InstanceData],
                indices: Sequence[MatchIndices], batch_idx: Tensor, query_idx: Tensor,
                num_masks: float) -> Dict[str, Tensor]:
        """Compute ``loss_mask`` and ``loss_dice`` of one prediction level.

        Args:
            masks: Mask logits ``[B, Q, h, w]``.
            targets: Prepared gt per image (``GtTargets``: ``mask_valid`` [N], the valid
                targets' ``valid_masks`` [Nv, H, W] bool and ``mask_rows`` [N]).
            indices: Per image ``(query_idx, gt_idx)``.
            batch_idx: ``[M]`` image of each matched pair (concatenated ``indices``).
            query_idx: ``[M]`` query of each matched pair.
            num_masks: Normaliser (number of gt masks, averaged over ranks).

        Returns:
            dict[str, Tensor]: ``loss_mask`` and ``loss_dice``; exactly 0 (still in the graph)
            when no matched gt has a mask.
        """
        valid = torch.cat([t.mask_valid[g] for t, (_, g) in zip(targets, indices)])
        if not bool(valid.any()):
            zero = masks.sum() * 0.0
            return {'loss_mask': zero, 'loss_dice': zero.clone()}
        src = masks[batch_idx[valid], query_idx[valid]].unsqueeze(1)  # [M, 1, h, w]
        with torch.no_grad():
            # uncertainty-based point selection (PointRend), in chunks of masks: its oversampled
            # [M, 3P] temporaries would otherwise grow with the denoising copies
            coords = torch.cat([
                get_uncertain_point_coords_with_randomness(
                    chunk, None, self.num_points, self.oversample_ratio,
                    self.importance_sample_ratio)
                for chunk in src.detach().split(self.chunk_size)
            ])  # [M, P, 2]
            # targets read in place at the points (no [M, H, W] float copies of the gt masks)
            per_image = [g[t.mask_valid[g]] for t, (_, g) in zip(targets, indices)]
            tgt_points = torch.cat([
                sample_mask_points(t.valid_masks, t.mask_rows[g], pts)
                for t, g, pts in zip(targets, per_image,
                                     coords.split([len(g) for g in per_image]))
            ]).to(src.dtype)  # [M, P]
        src_points = point_sample(src, coords).squeeze(1)  # [M, P]
        return {
            'loss_mask':
            self.loss_mask(src_points.reshape(-1), tgt_points.reshape(-1),
                           avg_factor=num_masks * self.num_points),
            'loss_dice':
            self.loss_dice(src_points, tgt_points, avg_factor=num_masks),
        }
