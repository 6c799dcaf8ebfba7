"""Multi-scale deformable pixel decoder that also exposes the flattened encoder memory."""
from typing import Dict, List, Sequence

import torch
from mmdet.models.layers import MSDeformAttnPixelDecoder
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from torch import Tensor

from .fp32_deform_attn import build_fp32_deform_attn


@MODELS.register_module()
class QueryMeldPixelDecoder(MSDeformAttnPixelDecoder):
    """Segmentation encoder of QueryMeldNet (paper section 3.1, "segmentation encoder").

    Mask DINO's encoder: a multi-scale deformable-attention transformer encoder over the
    lowest-resolution ``num_encoder_levels`` backbone levels (1/8, 1/16, 1/32 by default), then an
    FPN step onto the remaining high-resolution level (1/4) that gives the per-pixel mask features.
    The computation is mmdet's :class:`MSDeformAttnPixelDecoder`; this subclass only returns,
    besides its two outputs, the flattened memory with its spatial shapes, which the two-stage
    conditional query selection and the decoder's deformable cross-attention need.

    The encoder's deformable attention is :class:`Fp32MultiScaleDeformableAttention` (fp32 inside
    autocast; same parameters as mmcv's).

    Padding masks are not used (as in mmdet's Mask2Former and in Mask DINO when the padded size is a
    multiple of 32): the whole padded frame is the coordinate frame of boxes and masks.

    Args: see :class:`mmdet.models.layers.MSDeformAttnPixelDecoder`. ``num_outs`` must not exceed
        the number of encoder levels so that the multi-scale outputs are exactly the encoder memory.
    """

    def __init__(self, *args, **kwargs) -> None:
        if isinstance(kwargs.get('encoder'), dict):
            # mmdet reads encoder.layer_cfg... by attribute: accept plain dicts too
            kwargs['encoder'] = ConfigDict(kwargs['encoder'])
        super().__init__(*args, **kwargs)
        # deformable attention in fp32 under autocast (mmdet's encoder layer hard-codes mmcv's)
        for layer in self.encoder.layers:
            layer.self_attn = build_fp32_deform_attn(layer.self_attn_cfg)
        if self.num_outs > self.num_encoder_levels:
            raise ValueError(
                f'QueryMeldPixelDecoder: num_outs ({self.num_outs}) must be <= the number of '
                f'encoder levels ({self.num_encoder_levels}, encoder.layer_cfg.self_attn_cfg.'
                'num_levels)')
        if len(self.strides) != self.num_input_levels:
            raise ValueError(
                f'QueryMeldPixelDecoder: strides {list(self.strides)} and in_channels have '
                f'different lengths ({len(self.strides)} vs {self.num_input_levels})')

    def forward(self, feats: Sequence[Tensor]) -> Dict[str, object]:  # type: ignore[override]
        """Encode multi-scale features.

        Args:
            feats: Backbone (or neck) features, high to low resolution, each ``[B, C_i, H_i, W_i]``
                with the strides given at construction.

        Returns:
            dict with

            - ``mask_features`` (Tensor): ``[B, C_mask, H/4, W/4]`` per-pixel embeddings.
            - ``multi_scale_feats`` (list[Tensor]): ``num_outs`` maps ``[B, C, h_l, w_l]``, low to
              high resolution (the encoder output).
            - ``memory`` (Tensor): ``[B, S, C]`` the same maps flattened and concatenated,
              ``S = sum_l h_l * w_l``.
            - ``spatial_shapes`` (Tensor): ``[L, 2]`` long, ``(h_l, w_l)`` per level.
            - ``level_start_index`` (Tensor): ``[L]`` long, start of each level in ``memory``.
        """
        if len(feats) != self.num_input_levels:
            raise ValueError(
                f'QueryMeldPixelDecoder: expected {self.num_input_levels} feature levels from the '
                f'backbone/neck, got {len(feats)}; check in_channels/strides and out_indices')
        mask_features, ms_feats = super().forward(list(feats))
        ms_feats: List[Tensor] = list(ms_feats)
        memory = torch.cat([f.flatten(2).transpose(1, 2) for f in ms_feats], dim=1)
        spatial_shapes = torch.as_tensor([f.shape[-2:] for f in ms_feats],
                                         dtype=torch.long, device=memory.device)
        level_start_index = torch.cat((spatial_shapes.new_zeros(1),
                                       spatial_shapes.prod(1).cumsum(0)[:-1]))
        return dict(
            mask_features=mask_features,
            multi_scale_feats=ms_feats,
            memory=memory,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index)
