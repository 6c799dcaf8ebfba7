"""Open-vocabulary denoising queries (Mask DINO / DN-DETR style) and their attention mask."""
import logging
from typing import Dict, List, Optional

import torch
from mmdet.models.layers.transformer.utils import inverse_sigmoid
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn


def build_dn_attn_mask(num_groups: int, group_size: int, num_matching: int,
                       dn_see_matching: bool = False,
                       device: Optional[torch.device] = None) -> Tensor:
    """Self-attention mask that keeps denoising groups and matching queries apart.

    Layout of the query sequence: ``[group_0 | ... | group_{G-1} | matching]`` where every group
    has ``group_size`` slots. ``True`` means "may not attend" (``nn.MultiheadAttention``).
    Matching queries never see denoising queries (no ground-truth leakage, DN-DETR); a denoising
    group never sees another group; unless ``dn_see_matching`` (Mask DINO's choice), denoising
    queries do not see the matching queries either, so the two parts are fully independent.

    Args:
        num_groups: G.
        group_size: Slots per group (the largest number of targets in the batch).
        num_matching: Number of matching (learnable + conditional) queries.
        dn_see_matching: Let denoising queries attend to the matching queries.
        device: Device of the mask.

    Returns:
        Tensor: ``[N, N]`` bool with ``N = G * group_size + num_matching``.
    """
    pad = num_groups * group_size
    total = pad + num_matching
    mask = torch.ones(total, total, dtype=torch.bool, device=device)
    group_id = torch.arange(pad, device=device) // max(group_size, 1)
    mask[:pad, :pad] = group_id[:, None] != group_id[None, :]
    mask[pad:, pad:] = False
    mask[:pad, pad:] = not dn_see_matching
    return mask


@MODELS.register_module()
class OpenVocabDenoisingGenerator(BaseModule):
    """Denoising queries built from noised ground truth (Mask DINO section 3, DN-DETR).

    Each ground-truth instance is repeated in ``G = max(1, num_dn_queries // max_targets)`` groups.
    Its box (normalised cxcywh) is jittered by up to ``box_noise_scale`` times its half size
    (centre) and size (width/height); its label is replaced, with probability
    ``label_noise_ratio``, by a random text of the same sample's vocabulary. The content of a
    denoising query is the (noisy) label's text embedding through a Linear layer, so denoising
    stays open-vocabulary: no fixed class table.

    Denoising cap (LVIS / Objects365 / Visual Genome images with hundreds of objects): an image
    with more than ``max_dn_targets`` targets denoises a random subset of ``max_dn_targets`` of
    them (a new subset every step; ``dn_gt_idx`` names the original targets), so a batch never
    has more than ``max(num_dn_queries, max_dn_targets)`` denoising queries per image. Mask DINO
    skips denoising for the whole batch in that case (``scalar // max(known_num) == 0``); with
    many crowded sources in a batch that would switch denoising off for most steps, a subset
    keeps it on at bounded cost.

    Args:
        text_dims: D, the size of the text embeddings.
        embed_dims: C, the decoder's hidden size.
        num_dn_queries: Budget of denoising queries per image (the group count follows from it).
        label_noise_ratio: Probability of replacing a label.
        box_noise_scale: Box noise scale (Mask DINO uses 0.4).
        dn_see_matching: See :func:`build_dn_attn_mask`.
        max_dn_targets: Most targets of one image that are denoised (a random subset beyond);
            None means ``num_dn_queries`` (one group of at most the query budget).
    """

    def __init__(self, text_dims: int, embed_dims: int = 256, num_dn_queries: int = 100,
                 label_noise_ratio: float = 0.2, box_noise_scale: float = 0.4,
                 dn_see_matching: bool = False, max_dn_targets: Optional[int] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if max_dn_targets is not None and max_dn_targets < 1:
            raise ValueError(f'max_dn_targets must be positive or None, got {max_dn_targets}')
        self.max_dn_targets = max_dn_targets
        self.num_dn_queries = num_dn_queries
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.dn_see_matching = dn_see_matching
        self.embed_dims = embed_dims
        self.label_proj = nn.Linear(text_dims, embed_dims)

    def forward(self, gt_labels: List[Tensor], gt_boxes: List[Tensor], text_embeds: Tensor,
                text_valid: Tensor, num_matching: int) -> Optional[Dict[str, object]]:
        """Build the denoising queries of a batch.

        Args:
            gt_labels: Per image ``[N_b]`` long, indices into the image's texts.
            gt_boxes: Per image ``[N_b, 4]`` normalised cxcywh in [0, 1].
            text_embeds: ``[B, K, D]`` padded text embeddings.
            text_valid: ``[B, K]`` bool.
            num_matching: Number of matching queries that follow the denoising part.

        Returns:
            None when the batch has no target, else a dict with ``content`` ``[B, P, C]``,
            ``anchors`` ``[B, P, 4]`` unsigmoided cxcywh, ``attn_mask`` ``[P + num_matching]^2``
            bool and ``dn_meta`` = dict(num_dn_groups, pad_size=P, dn_positive_idx, dn_query_idx,
            dn_gt_idx) where the last three are per-image long tensors of equal length (query slot,
            target; ``dn_query_idx`` is ``dn_positive_idx`` under the criterion's name).
        """
        subsets = self._capped_subsets(gt_labels)
        num_targets = [int(l.numel()) if keep is None else int(keep.numel())
                       for l, keep in zip(gt_labels, subsets)]
        max_t = max(num_targets) if num_targets else 0
        if max_t == 0 or self.num_dn_queries <= 0:
            return None
        groups = max(1, self.num_dn_queries // max_t)
        pad = groups * max_t
        bsz = text_embeds.shape[0]
        device = text_embeds.device
        # buffers take the dtype of what is written into them: the projection runs in bf16/fp16
        # under autocast, the noised boxes stay in the ground truth's (fp32) precision
        content: Optional[Tensor] = None
        anchors: Optional[Tensor] = None
        pos_idx, gt_idx = [], []
        # per-image loop: vocabularies differ per image; all objects of an image are batched.
        for b, (labels, boxes, keep) in enumerate(zip(gt_labels, gt_boxes, subsets)):
            if keep is not None:  # more targets than max_dn_targets: the random subset
                labels, boxes = labels[keep.to(labels.device)], boxes[keep.to(boxes.device)]
            n = int(labels.numel())
            slots = (torch.arange(n, device=device)[None] +
                     max_t * torch.arange(groups, device=device)[:, None]).reshape(-1)
            targets = (torch.arange(n, device=device) if keep is None else
                       keep.to(device)).repeat(groups)
            pos_idx.append(slots)
            gt_idx.append(targets)
            if n == 0:
                continue
            labels = labels.to(device).long().repeat(groups)
            num_texts = int(text_valid[b].sum())
            if self.label_noise_ratio > 0 and num_texts > 0:
                flip = torch.rand(labels.shape, device=device) < self.label_noise_ratio
                labels = torch.where(flip, torch.randint_like(labels, 0, num_texts), labels)
            boxes = boxes.to(device=device).float().repeat(groups, 1)
            if self.box_noise_scale > 0:
                diff = torch.cat([boxes[:, 2:] / 2, boxes[:, 2:]], -1)
                noise = (torch.rand_like(boxes) * 2 - 1) * diff * self.box_noise_scale
                boxes = (boxes + noise).clamp(0.0, 1.0)
            proj = self.label_proj(text_embeds[b, labels])
            box_logits = inverse_sigmoid(boxes, eps=1e-3)
            if content is None:
                content = proj.new_zeros(bsz, pad, self.embed_dims)
                anchors = box_logits.new_zeros(bsz, pad, 4)
            content[b, slots] = proj
            anchors[b, slots] = box_logits
        attn_mask = build_dn_attn_mask(groups, max_t, num_matching, self.dn_see_matching, device)
        # dn_query_idx: the name QueryMeldCriterion reads (same tensors as dn_positive_idx)
        dn_meta = dict(num_dn_groups=groups, pad_size=pad, dn_positive_idx=pos_idx,
                       dn_query_idx=pos_idx, dn_gt_idx=gt_idx)
        return dict(content=content, anchors=anchors, attn_mask=attn_mask, dn_meta=dn_meta)

    def _capped_subsets(self, gt_labels: List[Tensor]) -> List[Optional[Tensor]]:
        """Per image, None (all targets denoised) or the sorted indices ``[max_dn_targets]`` of
        a random subset when the image has more targets than the cap."""
        cap = self.max_dn_targets if self.max_dn_targets is not None else self.num_dn_queries
        subsets: List[Optional[Tensor]] = []
        for b, labels in enumerate(gt_labels):
            n = int(labels.numel())
            if cap <= 0 or n <= cap:
                subsets.append(None)
                continue
            subsets.append(torch.randperm(n, device=labels.device)[:cap].sort().values)
            print_log(f'OpenVocabDenoisingGenerator: image {b} has {n} targets; denoising a '
                      f'random {cap} of them (max_dn_targets)', logger='current',
                      level=logging.DEBUG)
        return subsets
