"""Multi-scale deformable attention that always runs at its weights' precision (fp32 under AMP)."""
from typing import Optional

import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.registry import MODELS
from torch import Tensor


def _cast(tensor: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    """``tensor`` in ``dtype`` when it is a floating-point tensor, else unchanged."""
    if tensor is None or not torch.is_tensor(tensor) or not tensor.is_floating_point():
        return tensor
    return tensor.to(dtype)


@MODELS.register_module()
class Fp32MultiScaleDeformableAttention(MultiScaleDeformableAttention):
    """mmcv's :class:`MultiScaleDeformableAttention` kept out of autocast.

    mmcv's CUDA kernel has no bf16 variant and its fp16 path is fragile (sampling locations and
    attention weights rounded to half precision; Deformable DETR / Mask DINO run it in fp32 under
    AMP), so inside an autocast region this module disables autocast and casts its floating-point
    inputs (query, value, identity, positional embedding, reference points) to the dtype of its own
    weights, fp32 in mixed-precision training. The output is returned in the query's dtype, the
    dtype the surrounding autocast code would have received. Outside autocast with fp32 tensors it
    computes exactly what mmcv's module computes. Same arguments, parameters and state-dict keys
    as mmcv's module, so checkpoints are interchangeable.
    """

    def forward(self, query: Tensor, key: Optional[Tensor] = None,  # type: ignore[override]
                value: Optional[Tensor] = None, identity: Optional[Tensor] = None,
                query_pos: Optional[Tensor] = None, key_padding_mask: Optional[Tensor] = None,
                reference_points: Optional[Tensor] = None,
                spatial_shapes: Optional[Tensor] = None,
                level_start_index: Optional[Tensor] = None, **kwargs) -> Tensor:
        """Deformable attention at the weights' precision.

        Args:
            query: ``[B, N, C]`` (``batch_first``) or ``[N, B, C]``.
            key: Unused by the deformable attention (kept for mmcv's signature).
            value: ``[B, S, C]`` memory (``query`` when None).
            identity: Residual added to the output, shaped as ``query`` (``query`` when None).
            query_pos: Positional embedding added to ``query``, same shape.
            key_padding_mask: ``[B, S]`` bool, True = padding.
            reference_points: ``[B, N, L, 2]`` points or ``[B, N, L, 4]`` boxes, normalised.
            spatial_shapes: ``[L, 2]`` long ``(h, w)`` per level.
            level_start_index: ``[L]`` long.

        Returns:
            Tensor: shaped as ``query``, in ``query.dtype``.
        """
        out_dtype = query.dtype
        dtype = self.value_proj.weight.dtype
        identity = query if identity is None else identity
        value = query if value is None else value
        with torch.autocast(device_type=query.device.type, enabled=False):
            output = super().forward(
                _cast(query, dtype), key=_cast(key, dtype), value=_cast(value, dtype),
                identity=_cast(identity, dtype), query_pos=_cast(query_pos, dtype),
                key_padding_mask=key_padding_mask,
                reference_points=_cast(reference_points, dtype), spatial_shapes=spatial_shapes,
                level_start_index=level_start_index, **kwargs)
        return output.to(out_dtype)


def build_fp32_deform_attn(cfg: dict) -> Fp32MultiScaleDeformableAttention:
    """Build :class:`Fp32MultiScaleDeformableAttention` without drawing from the global RNG.

    Used to replace an mmcv deformable attention that mmdet's layers already built (their
    ``_init_layers`` hard-code mmcv's class): the replacement leaves the random stream where the
    original construction left it, so the rest of the model is initialised exactly as before, and
    ``init_weights`` re-initialises the attention itself.

    Args:
        cfg: Keyword arguments of mmcv's ``MultiScaleDeformableAttention``.

    Returns:
        The new module.
    """
    with torch.random.fork_rng(devices=[]):
        return Fp32MultiScaleDeformableAttention(**dict(cfg))
