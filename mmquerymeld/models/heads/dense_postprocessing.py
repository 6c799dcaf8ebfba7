"""Semantic and panoptic post-processing in row bands of the output frame (memory-bounded).

Mask2Former / Mask DINO form these maps from all Q upsampled masks (``[Q, H, W]``) and, for
semantic, a ``[K, H, W]`` class-score tensor. Here the per-pixel decisions are taken band by band:
a band's mask logits are upsampled alone (:meth:`MaskFrame.upsample` with ``rows``, the same
bilinear sampling as a full upsample), semantic scores are reduced over chunks of texts with a
running arg-max, and panoptic keeps per band only the winning query of each pixel and per-query
area counts; the kept segments are decided from the counts afterwards. No working tensor grows
with the vocabulary, and none with the output size beyond one band.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.structures.mask import mask2bbox
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from mmquerymeld.utils import INSTANCE_OFFSET
from .mask_frame import MaskFrame
from .postprocess_utils import (check_inputs, class_probabilities, frame_or_identity,
                                query_types_or_unknown)

__all__ = ['postprocess_semantic', 'postprocess_panoptic']


def postprocess_semantic(cls_logits: Tensor, mask_logits: Tensor,
                         frame: Optional[MaskFrame] = None,
                         sharpen_temperature: Optional[float] = None) -> PixelData:
    """Semantic segmentation: per pixel, the text with the largest sum over queries of
    class probability x mask probability (Mask2Former semantic inference, sigmoid classes).

    Args:
        cls_logits: [Q, K].
        mask_logits: [Q, h, w] (the output frame itself when ``frame`` is None).
        frame: Maps ``mask_logits`` to the output frame [H, W]; None: identity.
        sharpen_temperature: None (raw sigmoid class probabilities) or Mask DINO's T for
            ``softmax(sigmoid / T)`` over the texts (:func:`class_probabilities`).

    Returns:
        PixelData: ``sem_seg`` [1, H, W] long, index into the image's texts.
    """
    num_q, num_k = check_inputs(cls_logits, mask_logits)
    frame = frame_or_identity(frame, mask_logits)
    weights = class_probabilities(cls_logits, sharpen_temperature).t().to(mask_logits.dtype)
    out_h, out_w = frame.out_shape
    seg = torch.zeros((out_h, out_w), dtype=torch.long, device=mask_logits.device)
    for y0, y1 in frame.row_bands(max(num_q, 1)):
        probs = frame.upsample(mask_logits, (y0, y1)).sigmoid().flatten(1)  # [Q, b * W]
        step = max(1, frame.max_elements // max(1, probs.shape[1]))
        best_val = best_idx = None
        for k0 in range(0, num_k, step):  # running arg-max over chunks of texts
            val, idx = (weights[k0:k0 + step] @ probs).max(0)  # first index on ties
            if best_val is None:
                best_val, best_idx = val, idx
            else:
                better = val > best_val  # strict: an earlier text keeps a tie, as argmax
                best_val = torch.where(better, val, best_val)
                best_idx = torch.where(better, idx + k0, best_idx)
        seg[y0:y1] = best_idx.view(y1 - y0, out_w)
    return PixelData(sem_seg=seg[None])


def _panoptic_winners(kept_logits: Tensor, kept_scores: Tensor, frame: MaskFrame,
                      mask_thr: float) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per pixel the kept query with the largest ``score x mask prob``, band by band.

    Returns:
        tuple: ``winner_map`` [H, W] long (the winning kept query where it is also inside its
        own mask, else -1), and per kept query ``won_area``, ``own_area`` (pixels with mask
        prob >= ``mask_thr``) and ``area`` (won and own) [n] long.
    """
    num = kept_logits.shape[0]
    device = kept_logits.device
    out_h, out_w = frame.out_shape
    winner_map = torch.full((out_h, out_w), -1, dtype=torch.long, device=device)
    won_area, own_area, area = (torch.zeros(num, dtype=torch.long, device=device)
                                for _ in range(3))
    weights = kept_scores.to(kept_logits.dtype)[:, None, None]
    for y0, y1 in (frame.row_bands(num) if num > 0 else ()):
        probs = frame.upsample(kept_logits, (y0, y1)).sigmoid()  # [n, b, W]
        winner = (weights * probs).argmax(0)  # [b, W]
        own = probs >= mask_thr
        own_area += own.flatten(1).sum(1)
        won_area += torch.bincount(winner.flatten(), minlength=num)
        own_at_winner = own.gather(0, winner[None])[0]
        area += torch.bincount(winner[own_at_winner], minlength=num)
        winner_map[y0:y1] = winner.masked_fill(~own_at_winner, -1)
    return winner_map, won_area, own_area, area


def postprocess_panoptic(cls_logits: Tensor,
                         mask_logits: Tensor,
                         query_types: Optional[Tensor],
                         thing_flags: Sequence[bool],
                         object_mask_thr: float = 0.25,
                         iou_thr: float = 0.8,
                         mask_thr: float = 0.5,
                         frame: Optional[MaskFrame] = None,
                         sharpen_temperature: Optional[float] = None
                         ) -> Tuple[PixelData, InstanceData]:
    """Panoptic segmentation (Mask2Former panoptic inference with sigmoid classes).

    Queries whose best class probability exceeds ``object_mask_thr`` compete per pixel by
    ``score x mask prob``; a query keeps its won pixels (inside its own mask) only if they are at
    least ``iou_thr`` of its mask. Thing queries become separate instances; stuff queries of the
    same text merge into one segment. Queries are visited by decreasing score.

    Args:
        cls_logits: [Q, K].
        mask_logits: [Q, h, w] (the output frame itself when ``frame`` is None).
        query_types: [Q] long, or None (then -1).
        thing_flags: K bools, True for thing texts (from the evaluation dataset's metainfo).
        object_mask_thr: Minimum class probability of a kept query. Defaults to 0.25 (Mask DINO's
            value for sigmoid class scores; Mask2Former's 0.8 is meant for softmax scores and
            keeps almost nothing after focal-loss training).
        iou_thr: Minimum (won area / own mask area) of a kept query. Defaults to 0.8.
        mask_thr: Probability threshold of a query's own mask. Defaults to 0.5.
        frame: Maps ``mask_logits`` to the output frame [H, W]; None: identity.
        sharpen_temperature: None, or Mask DINO's T: queries are still kept by their sigmoid
            score (``object_mask_thr``), then ranked, weighted and scored by
            ``max softmax(sigmoid / T)`` (Mask DINO's ``panoptic_inference``).

    Returns:
        tuple[PixelData, InstanceData]: ``sem_seg`` [1, H, W] long with
        ``label + instance_id * INSTANCE_OFFSET`` (stuff: instance_id 0; things from 1; void =
        K); and the kept segments: ``masks`` [S, H, W] bool, ``labels``, ``scores`` (best query
        score), ``query_types`` (the type covering most of the segment's pixels), ``bboxes``
        (from the masks), ``is_thing`` [S] bool, ``segment_ids`` [S] (their value in
        ``sem_seg``).
    """
    num_q, num_k = check_inputs(cls_logits, mask_logits, None, query_types)
    if len(thing_flags) != num_k:
        raise ValueError(f'thing_flags has {len(thing_flags)} entries but there are {num_k} '
                         'texts (metainfo["thing_flags"] must have one bool per text)')
    frame = frame_or_identity(frame, mask_logits)
    device = cls_logits.device
    types = query_types_or_unknown(query_types, num_q, device)
    scores, labels = cls_logits.sigmoid().max(-1)
    keep = torch.nonzero(scores > object_mask_thr, as_tuple=False).squeeze(1)
    if sharpen_temperature is not None:
        scores = class_probabilities(cls_logits, sharpen_temperature).max(-1).values
    keep = keep[scores[keep].argsort(descending=True)]
    winner_map, won_area, own_area, area = _panoptic_winners(mask_logits[keep], scores[keep],
                                                             frame, mask_thr)

    # segment id of each kept query (index 0: not won / outside its mask -> void)
    lut = torch.full((len(keep) + 1, ), num_k, dtype=torch.long, device=device)
    seg_labels: List[int] = []
    seg_scores: List[float] = []
    seg_ids: List[int] = []
    seg_type_pixels: List[Dict[int, int]] = []
    stuff_segment: Dict[int, int] = {}
    instance_id = 1
    for i, (q, won, own, px) in enumerate(
            zip(keep.tolist(), won_area.tolist(), own_area.tolist(), area.tolist())):
        if won == 0 or own == 0 or px == 0 or won / own < iou_thr:
            continue
        label, qtype = int(labels[q]), int(types[q])
        if bool(thing_flags[label]):
            segment_id = label + instance_id * INSTANCE_OFFSET
            instance_id += 1
        elif label in stuff_segment:  # stuff of one text: merged into one segment
            s = stuff_segment[label]
            lut[i + 1] = seg_ids[s]
            seg_type_pixels[s][qtype] = seg_type_pixels[s].get(qtype, 0) + px
            continue
        else:
            segment_id = label
            stuff_segment[label] = len(seg_ids)
        lut[i + 1] = segment_id
        seg_labels.append(label)
        seg_scores.append(float(scores[q]))
        seg_ids.append(segment_id)
        seg_type_pixels.append({qtype: px})

    panoptic = lut[winner_map + 1]  # [H, W]
    ids = torch.tensor(seg_ids, dtype=torch.long, device=device)
    masks = panoptic[None] == ids[:, None, None]  # [S, H, W]: the kept segments only
    instances = InstanceData(
        masks=masks,
        labels=torch.tensor(seg_labels, dtype=torch.long, device=device),
        scores=torch.tensor(seg_scores, dtype=torch.float32, device=device),
        query_types=torch.tensor([max(p, key=p.get) for p in seg_type_pixels],
                                 dtype=torch.long, device=device),
        bboxes=mask2bbox(masks).float().reshape(-1, 4),
        is_thing=torch.tensor([bool(thing_flags[lb]) for lb in seg_labels],
                              dtype=torch.bool, device=device),
        segment_ids=ids)
    return PixelData(sem_seg=panoptic[None]), instances
