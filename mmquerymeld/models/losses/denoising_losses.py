"""Denoising supervision (Mask DINO / DN-DETR): each denoising query reconstructs a known gt.

Denoising queries are not matched: ``dn_meta`` (built by ``OpenVocabDenoisingGenerator``)
names, per image, the denoising query slots that carry a target and the gt index each
reconstructs. The other slots are padding and act as class negatives. Targets without box
supervision (``box_valid`` False: semantic-task targets, panoptic stuff) are denoised too, as in
Mask DINO, whose panoptic denoising feeds every target's noised box as the anchor and drops only
the box loss of stuff (``loss_boxes_panoptic`` applies to the denoising part as well): their
denoising queries get class and mask losses, no box loss.
"""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.structures import InstanceData
from torch import Tensor

from .matching import MatchIndices


def dn_match_indices(dn_meta: dict, targets: Sequence[InstanceData], num_dn_queries: int,
                     device: torch.device) -> List[MatchIndices]:
    """Validate ``dn_meta`` and turn it into per-image ``(query_idx, gt_idx)`` pairs.

    Args:
        dn_meta: ``dn_query_idx`` and ``dn_gt_idx``: per image, long tensors (or sequences)
            ``[M_b]`` of equal length.
        targets: Prepared gt per image (for the range check of ``dn_gt_idx``).
        num_dn_queries: D, the number of denoising query slots per image.
        device: Device of the returned tensors.

    Returns:
        list[MatchIndices]: per image ``(query_idx [M_b], gt_idx [M_b])`` long.

    Raises:
        ValueError: if ``dn_meta`` misses a key, has the wrong number of images, lengths differ,
            or an index is out of range.
    """
    q_list, g_list = dn_meta.get('dn_query_idx'), dn_meta.get('dn_gt_idx')
    if q_list is None or g_list is None or len(q_list) != len(targets) or len(
            g_list) != len(targets):
        raise ValueError('dn_meta needs "dn_query_idx" and "dn_gt_idx": one tensor per image '
                         f'({len(targets)} images)')
    indices = []
    for b, (q, g) in enumerate(zip(q_list, g_list)):
        q = torch.as_tensor(q, device=device).long().reshape(-1)
        g = torch.as_tensor(g, device=device).long().reshape(-1)
        if q.numel() != g.numel():
            raise ValueError(f'dn_meta of image {b}: dn_query_idx has {q.numel()} entries but '
                             f'dn_gt_idx {g.numel()}')
        if q.numel() and (int(q.max()) >= num_dn_queries or int(q.min()) < 0):
            raise ValueError(f'dn_meta of image {b}: dn_query_idx out of range '
                             f'[0, {num_dn_queries})')
        if g.numel() and (int(g.max()) >= len(targets[b]) or int(g.min()) < 0):
            raise ValueError(f'dn_meta of image {b}: dn_gt_idx out of range '
                             f'[0, {len(targets[b])}) (number of gt)')
        indices.append((q, g))
    return indices


class DenoisingLossMixin:
    """Denoising losses of a set criterion.

    The host class provides ``_level_losses(level, targets, indices, text_valid, num_gt,
    num_boxes, num_masks, prefix)`` and ``_avg_count(count, device)`` (see ``QueryMeldCriterion``).
    """

    def _dn_losses(self, dn_outputs: dict, dn_meta: dict, targets: List[InstanceData],
                   text_valid: Optional[Tensor]) -> Dict[str, Tensor]:
        """Denoising losses of the final level and of every auxiliary level.

        Args:
            dn_outputs: ``pred_logits`` [B, D, K], ``pred_boxes`` [B, D, 4], optional
                ``pred_masks`` [B, D, h, w], ``aux_outputs`` (list of the same).
            dn_meta: See :func:`dn_match_indices`.
            targets: Prepared gt per image.
            text_valid: [B, K] bool or None.

        Returns:
            dict[str, Tensor]: ``dn.loss_*`` and ``dn.d{i}.loss_*``, normalised by the number of
            dn queries with a target (box terms: those whose gt has ``box_valid``; mask terms:
            those whose gt has a mask).
        """
        device = dn_outputs['pred_logits'].device
        num_dn_queries = dn_outputs['pred_logits'].shape[1]
        indices = dn_match_indices(dn_meta, targets, num_dn_queries, device)
        num_dn = self._avg_count(sum(q.numel() for q, _ in indices), device)
        num_dn_boxes = self._avg_count(
            sum(int(t.box_valid[g].sum()) for t, (_, g) in zip(targets, indices)), device)
        num_dn_masks = self._avg_count(
            sum(int(t.mask_valid[g].sum()) for t, (_, g) in zip(targets, indices)), device)
        losses = self._level_losses(dn_outputs, targets, indices,
                                    dn_outputs.get('text_valid', text_valid), num_dn,
                                    num_dn_boxes, num_dn_masks, 'dn.')
        for i, aux in enumerate(dn_outputs.get('aux_outputs') or []):
            losses.update(
                self._level_losses(aux, targets, indices, aux.get('text_valid', text_valid),
                                   num_dn, num_dn_boxes, num_dn_masks, f'dn.d{i}.'))
        return losses
