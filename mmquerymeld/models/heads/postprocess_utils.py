"""Helpers shared by the per-task post-processing functions: input checks, class
probabilities (with Mask DINO's optional sharpening) and the select-then-upsample of kept masks."""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .mask_frame import MaskFrame


def check_inputs(cls_logits: Tensor,
                 mask_logits: Optional[Tensor] = None,
                 boxes: Optional[Tensor] = None,
                 query_types: Optional[Tensor] = None) -> Tuple[int, int]:
    """Validate shapes; return (Q, K). ``mask_logits`` may be at any resolution."""
    if not isinstance(cls_logits, Tensor) or cls_logits.dim() != 2:
        raise ValueError('cls_logits must be a Tensor [Q, K], got '
                         f'{tuple(getattr(cls_logits, "shape", ()))}')
    num_q, num_k = cls_logits.shape
    if mask_logits is not None and (mask_logits.dim() != 3 or mask_logits.shape[0] != num_q):
        raise ValueError(f'mask_logits must be [Q={num_q}, h, w], got {tuple(mask_logits.shape)}')
    if boxes is not None and tuple(boxes.shape) != (num_q, 4):
        raise ValueError(f'boxes must be [Q={num_q}, 4] xyxy, got {tuple(boxes.shape)}')
    if query_types is not None and tuple(query_types.shape) != (num_q, ):
        raise ValueError(f'query_types must be [Q={num_q}], got {tuple(query_types.shape)}')
    return num_q, num_k


def frame_or_identity(frame: Optional[MaskFrame], mask_logits: Tensor) -> MaskFrame:
    """``frame``, or the identity frame of masks already at the output size."""
    return frame if frame is not None else MaskFrame.identity(mask_logits.shape[-2:])


def query_types_or_unknown(query_types: Optional[Tensor], num_q: int,
                           device: torch.device) -> Tensor:
    """``query_types`` as a long tensor; -1 (unknown) when not given."""
    if query_types is None:
        return torch.full((num_q, ), -1, dtype=torch.long, device=device)
    return query_types.to(device=device, dtype=torch.long)


def class_probabilities(cls_logits: Tensor,
                        sharpen_temperature: Optional[float] = None) -> Tensor:
    """Per query and text the class probability ``sigmoid(logit)`` ``[Q, K]``.

    With ``sharpen_temperature`` T, Mask DINO's score transform for semantic / panoptic
    inference (``PANO_TRANSFORM_EVAL`` with ``PANO_TEMPERATURE`` = 0.06 in its
    ``maskdino/config.py``: sigmoid scores of focal-loss training "are not sharp enough"):
    ``softmax(sigmoid(logit) / T)`` over the image's (valid) texts.
    """
    probs = cls_logits.sigmoid()
    if sharpen_temperature is None:
        return probs
    if float(sharpen_temperature) <= 0:
        raise ValueError(f'sharpen_temperature must be > 0 (or None: off), got '
                         f'{sharpen_temperature}')
    return (probs / float(sharpen_temperature)).softmax(-1)


def mask_scores(mask_logits: Tensor, binary: Tensor) -> Tensor:
    """Mean foreground probability inside each binary mask (Mask2Former rescoring).

    Args:
        mask_logits: [N, H, W] logits.
        binary: [N, H, W] bool.

    Returns:
        Tensor: [N] scores in [0, 1].
    """
    probs = mask_logits.sigmoid().flatten(1)
    binary = binary.flatten(1).to(probs.dtype)
    return (probs * binary).sum(1) / (binary.sum(1) + 1e-6)


def selected_masks(mask_logits: Tensor, query_idx: Tensor, frame: MaskFrame,
                   with_scores: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
    """Binary output-frame masks of the selected queries (select first, then upsample).

    Each distinct query is upsampled once, in chunks of ``frame.query_chunks``; a query selected
    twice (several labels) is copied, not upsampled again.

    Args:
        mask_logits: ``[Q, h, w]`` logits in ``frame``'s input resolution.
        query_idx: ``[N]`` long, the selected queries (repeats allowed).
        frame: The output frame.
        with_scores: Also return the mean mask probability inside each binary mask.

    Returns:
        tuple: ``masks`` ``[N, H, W]`` bool (``logit > 0``) and ``[N]`` mask scores (or None).
    """
    out_h, out_w = frame.out_shape
    masks = torch.zeros((len(query_idx), out_h, out_w), dtype=torch.bool,
                        device=mask_logits.device)
    scores = mask_logits.new_zeros((len(query_idx), )) if with_scores else None
    if len(query_idx) == 0:
        return masks, scores
    unique, inverse = torch.unique(query_idx, return_inverse=True)
    for chunk in frame.query_chunks(len(unique)):
        logits = frame.upsample(mask_logits[unique[chunk]])
        binary = logits > 0
        pos = torch.nonzero((inverse >= chunk.start) & (inverse < chunk.stop)).squeeze(1)
        local = inverse[pos] - chunk.start
        masks[pos] = binary[local]
        if with_scores:
            scores[pos] = mask_scores(logits, binary)[local]
    return masks, scores
