"""Conditional queries: two-stage selection of encoder proposals scored against text embeddings."""
from typing import Callable, Dict, Optional

import torch
from mmdet.models.layers.transformer.utils import MLP, inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmengine.model import BaseModule
from torch import Tensor, nn

#: Logit given to invalid proposals' boxes (finite, so no inf/NaN ever reaches a loss).
INVALID_PROPOSAL_LOGIT = 10.0


def encoder_output_proposals(spatial_shapes: Tensor, batch_size: int, base_scale: float = 0.05,
                             device=None, valid_ratios: Optional[Tensor] = None) -> tuple:
    """Grid proposals at every memory location (Deformable DETR two-stage, Zhu et al. 2020).

    Each location proposes a box centred on its cell with side ``base_scale * 2**r`` (normalised
    to the padded frame), where ``r`` is the level's rank by resolution, finest first: the
    finest map (stride 8) proposes the smallest boxes, as in Deformable DETR / Mask DINO. The rank
    does not depend on the order of ``spatial_shapes`` (the pixel decoder lists the coarsest
    level first).

    Args:
        spatial_shapes: ``[L, 2]`` long, ``(h_l, w_l)``.
        batch_size: B.
        base_scale: Side of the finest level's proposals.
        device: Device of the result; defaults to ``spatial_shapes.device``.
        valid_ratios: ``[B, 2]`` optional ``(w, h)`` fraction of the padded frame covered by each
            image; proposals centred in the padding are then invalid.

    Returns:
        tuple: ``proposals`` ``[B, S, 4]`` unsigmoided cxcywh, and ``valid`` ``[B, S, 1]`` bool,
        False where the proposal touches the border (its logit is then a large finite value)
        or, with ``valid_ratios``, lies in the padding (its box is kept).
    """
    device = device if device is not None else spatial_shapes.device
    shapes = spatial_shapes.tolist()
    # rank of each level by number of cells, largest (finest) first; stable for ties
    order = sorted(range(len(shapes)), key=lambda i: -shapes[i][0] * shapes[i][1])
    rank = {lvl: r for r, lvl in enumerate(order)}
    props = []
    for lvl, (h, w) in enumerate(shapes):
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=device),
            torch.arange(w, dtype=torch.float32, device=device), indexing='ij')
        cxcy = torch.stack([(xs.reshape(-1) + 0.5) / w, (ys.reshape(-1) + 0.5) / h], -1)
        wh = torch.full_like(cxcy, base_scale * 2.0**rank[lvl])
        props.append(torch.cat([cxcy, wh], -1))
    proposals = torch.cat(props, 0)[None].expand(batch_size, -1, -1)
    valid = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
    proposals = inverse_sigmoid(proposals.clamp(0.01, 0.99), eps=1e-5)
    proposals = proposals.masked_fill(~valid, INVALID_PROPOSAL_LOGIT)
    if valid_ratios is not None:
        if tuple(valid_ratios.shape) != (batch_size, 2):
            raise ValueError(f'encoder_output_proposals: valid_ratios must be [{batch_size}, 2] '
                             f'(w, h), got {tuple(valid_ratios.shape)}')
        centres = torch.cat(props, 0)[None, :, :2]  # [1, S, 2]
        inside = (centres < valid_ratios.to(device)[:, None, :]).all(-1, keepdim=True)
        valid = valid & inside
    return proposals, valid


def masks_to_anchor_logits(mask_logits: Tensor, fallback_logits: Tensor) -> Tensor:
    """Mask-enhanced box initialisation (Mask DINO section 3.3): boxes from predicted masks.

    Args:
        mask_logits: ``[B, Q, h, w]`` mask logits (detached by the caller).
        fallback_logits: ``[B, Q, 4]`` unsigmoided cxcywh used where a mask is empty.

    Returns:
        Tensor: ``[B, Q, 4]`` unsigmoided cxcywh, normalised to the mask frame.
    """
    b, q, h, w = mask_logits.shape
    binary = mask_logits > 0
    x_any = binary.any(2).to(mask_logits.dtype)  # [B, Q, w]
    y_any = binary.any(3).to(mask_logits.dtype)  # [B, Q, h]
    # first / last occupied column and row, vectorised (no per-mask loop)
    x0 = x_any.argmax(-1)
    x1 = w - x_any.flip(-1).argmax(-1)
    y0 = y_any.argmax(-1)
    y1 = h - y_any.flip(-1).argmax(-1)
    boxes = torch.stack([x0, y0, x1, y1], -1).to(mask_logits.dtype)
    boxes = bbox_xyxy_to_cxcywh(boxes) / boxes.new_tensor([w, h, w, h])
    empty = (x_any.sum(-1) == 0)[..., None]
    return torch.where(empty, fallback_logits, inverse_sigmoid(boxes.clamp(0, 1), eps=1e-3))


@MODELS.register_module()
class ConditionalQueryGenerator(BaseModule):
    """Encoder-proposal selection for the conditional queries (paper 3.2, Figure 3 (b)).

    Mask DINO's two-stage scheme: every encoder token becomes a proposal (content feature
    ``LayerNorm(Linear(memory))`` and a box refined from a grid anchor); proposals are scored by the
    open-vocabulary classifier against the sample's text embeddings (max over the valid texts), and
    the top-k become the conditional queries: content = the selected features (detached, Mask DINO
    ``learn_tgt=False``), anchors = the selected boxes (detached). The undetached selections are
    returned too, so that the encoder proposals can be supervised.

    Args:
        embed_dims: Hidden size C.
        num_queries: k, the number of conditional queries.
        base_scale: Side of the finest level's grid proposals.
    """

    def __init__(self, embed_dims: int = 256, num_queries: int = 300, base_scale: float = 0.05,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.num_queries = num_queries
        self.base_scale = base_scale
        self.enc_output = nn.Linear(embed_dims, embed_dims)
        self.enc_output_norm = nn.LayerNorm(embed_dims)
        self.enc_box_head = MLP(embed_dims, embed_dims, 4, 3)
        nn.init.zeros_(self.enc_box_head.layers[-1].weight)
        nn.init.zeros_(self.enc_box_head.layers[-1].bias)

    def forward(self, memory: Tensor, spatial_shapes: Tensor,
                score_fn: Callable[[Tensor], Tensor],
                valid_ratios: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Select the top-k proposals.

        Args:
            memory: ``[B, S, C]`` encoder memory.
            spatial_shapes: ``[L, 2]`` long.
            score_fn: Maps proposal features ``[B, S, C]`` to one score per proposal ``[B, S]``
                (the max class logit over the sample's valid texts).
            valid_ratios: ``[B, 2]`` optional ``(w, h)`` fraction of the padded frame covered by
                each image (``img_shape / batch_input_shape``): proposals centred in the batch
                padding are never selected (unless fewer than k proposals are valid).

        Returns:
            dict with ``content`` ``[B, k, C]`` (detached), ``anchors`` ``[B, k, 4]`` unsigmoided
            cxcywh (detached), ``content_undetached``, ``anchors_undetached`` (same shapes, for the
            encoder-proposal losses) and ``topk_index`` ``[B, k]`` long.
        """
        b, s, c = memory.shape
        if self.num_queries > s:
            raise ValueError(
                f'ConditionalQueryGenerator: {self.num_queries} conditional queries requested but '
                f'the encoder memory has only {s} tokens; use larger images or fewer queries')
        proposals, valid = encoder_output_proposals(spatial_shapes, b, self.base_scale,
                                                    memory.device, valid_ratios)
        proposals = proposals.to(memory.dtype)
        feats = self.enc_output_norm(self.enc_output(memory.masked_fill(~valid, 0.0)))
        scores = score_fn(feats)
        if scores.shape != (b, s):
            raise ValueError(f'ConditionalQueryGenerator: score_fn returned {tuple(scores.shape)}, '
                             f'expected {(b, s)}')
        scores = scores.detach().masked_fill(~valid[..., 0], float('-inf'))
        topk_index = scores.topk(self.num_queries, dim=1).indices  # [B, k]
        sel_feats = feats.gather(1, topk_index[..., None].expand(-1, -1, c))
        sel_props = proposals.gather(1, topk_index[..., None].expand(-1, -1, 4))
        anchors_undetached = self.enc_box_head(sel_feats) + sel_props
        return dict(
            content=sel_feats.detach(),
            anchors=anchors_undetached.detach(),
            content_undetached=sel_feats,
            anchors_undetached=anchors_undetached,
            topk_index=topk_index)
