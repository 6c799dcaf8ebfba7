"""Per-task post-processing of one image's QueryMeldNet predictions.

Every function takes one image's outputs: ``cls_logits`` [Q, K] (sigmoid space, query . text,
no background class; K = the image's real vocabulary, padding already removed),
``mask_logits`` [Q, H, W] already resized to the output frame by the head, ``boxes`` [Q, 4] xyxy
in that frame, and ``query_types`` [Q] (``mmquerymeld.utils.QUERY_TYPES``: 0 learnable,
1 conditional). Outputs follow docs/data_contract.md; every instance-like output carries
``query_types`` so the thing/stuff split of the paper's section 4.1 can be measured.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from mmdet.structures.mask import mask2bbox
from mmquerymeld.utils import INSTANCE_OFFSET

__all__ = [
    'postprocess_semantic', 'postprocess_instance', 'postprocess_panoptic',
    'postprocess_referring', 'postprocess_foreground', 'postprocess_detection',
    'postprocess_by_task'
]


def _check_inputs(cls_logits: Tensor,
                  mask_logits: Optional[Tensor] = None,
                  boxes: Optional[Tensor] = None,
                  query_types: Optional[Tensor] = None) -> Tuple[int, int]:
    """Validate shapes; return (Q, K)."""
    if not isinstance(cls_logits, Tensor) or cls_logits.dim() != 2:
        raise ValueError('cls_logits must be a Tensor [Q, K], got '
                         f'{tuple(getattr(cls_logits, "shape", ()))}')
    num_q, num_k = cls_logits.shape
    if mask_logits is not None and (mask_logits.dim() != 3 or mask_logits.shape[0] != num_q):
        raise ValueError(f'mask_logits must be [Q={num_q}, H, W], got {tuple(mask_logits.shape)}')
    if boxes is not None and tuple(boxes.shape) != (num_q, 4):
        raise ValueError(f'boxes must be [Q={num_q}, 4] xyxy, got {tuple(boxes.shape)}')
    if query_types is not None and tuple(query_types.shape) != (num_q, ):
        raise ValueError(f'query_types must be [Q={num_q}], got {tuple(query_types.shape)}')
    return num_q, num_k


def _query_types_or_unknown(query_types: Optional[Tensor], num_q: int,
                            device: torch.device) -> Tensor:
    """``query_types`` as a long tensor; -1 (unknown) when not given."""
    if query_types is None:
        return torch.full((num_q, ), -1, dtype=torch.long, device=device)
    return query_types.to(device=device, dtype=torch.long)


def _mask_scores(mask_logits: Tensor, binary: Tensor) -> Tensor:
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


def _topk_query_class(cls_logits: Tensor, max_per_image: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Top-k over queries x classes of the sigmoid scores (Mask2Former instance inference).

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``scores`` [k], ``query_idx`` [k], ``labels`` [k].
    """
    num_k = cls_logits.shape[1]
    scores = cls_logits.sigmoid().flatten()
    k = min(int(max_per_image), scores.numel())
    top_scores, top_idx = scores.topk(k, sorted=True)
    return top_scores, top_idx // num_k, top_idx % num_k


def postprocess_semantic(cls_logits: Tensor, mask_logits: Tensor) -> PixelData:
    """Semantic segmentation: per pixel, the text with the largest sum over queries of
    class probability x mask probability (Mask2Former semantic inference, sigmoid classes).

    Args:
        cls_logits: [Q, K].
        mask_logits: [Q, H, W].

    Returns:
        PixelData: ``sem_seg`` [1, H, W] long, index into the image's texts.
    """
    _check_inputs(cls_logits, mask_logits)
    seg = torch.einsum('qk,qhw->khw', cls_logits.sigmoid(), mask_logits.sigmoid())
    return PixelData(sem_seg=seg.argmax(0, keepdim=True).long())


def postprocess_instance(cls_logits: Tensor,
                         mask_logits: Tensor,
                         boxes: Optional[Tensor],
                         query_types: Optional[Tensor],
                         max_per_image: int = 100) -> InstanceData:
    """Instance segmentation: top-k over queries x classes, rescored by mask confidence.

    Mask2Former / Mask DINO instance inference: ``score = class prob x mean mask prob inside the
    binary mask``; a query may appear with several labels.

    Args:
        cls_logits: [Q, K].
        mask_logits: [Q, H, W].
        boxes: [Q, 4] xyxy in the mask frame, or None (boxes then come from the masks).
        query_types: [Q] long, or None (then -1).
        max_per_image: Number of kept predictions. Defaults to 100.

    Returns:
        InstanceData: ``masks`` [N, H, W] bool, ``bboxes`` [N, 4], ``scores`` [N], ``labels``
        [N] (index into texts), ``query_types`` [N]; N = min(max_per_image, Q x K), sorted by
        class score.
    """
    num_q, _ = _check_inputs(cls_logits, mask_logits, boxes, query_types)
    types = _query_types_or_unknown(query_types, num_q, cls_logits.device)
    cls_scores, query_idx, labels = _topk_query_class(cls_logits, max_per_image)
    kept_logits = mask_logits[query_idx]
    masks = kept_logits > 0
    scores = cls_scores * _mask_scores(kept_logits, masks)
    bboxes = boxes[query_idx].float() if boxes is not None else mask2bbox(masks).float()
    return InstanceData(
        masks=masks, bboxes=bboxes, scores=scores, labels=labels, query_types=types[query_idx])


def postprocess_panoptic(cls_logits: Tensor,
                         mask_logits: Tensor,
                         query_types: Optional[Tensor],
                         thing_flags: Sequence[bool],
                         object_mask_thr: float = 0.25,
                         iou_thr: float = 0.8,
                         mask_thr: float = 0.5) -> Tuple[PixelData, InstanceData]:
    """Panoptic segmentation (Mask2Former panoptic inference with sigmoid classes).

    Queries whose best class probability exceeds ``object_mask_thr`` compete per pixel by
    ``score x mask prob``; a query keeps its won pixels (inside its own mask) only if they are at
    least ``iou_thr`` of its mask. Thing queries become separate instances; stuff queries of the
    same text merge into one segment. Queries are visited by decreasing score.

    Args:
        cls_logits: [Q, K].
        mask_logits: [Q, H, W].
        query_types: [Q] long, or None (then -1).
        thing_flags: K bools, True for thing texts (from the evaluation dataset's metainfo).
        object_mask_thr: Minimum class probability of a kept query. Defaults to 0.25 (Mask DINO's
            value for sigmoid class scores; Mask2Former's 0.8 is meant for softmax scores and
            keeps almost nothing after focal-loss training).
        iou_thr: Minimum (won area / own mask area) of a kept query. Defaults to 0.8.
        mask_thr: Probability threshold of a query's own mask. Defaults to 0.5.

    Returns:
        tuple[PixelData, InstanceData]: ``sem_seg`` [1, H, W] long with
        ``label + instance_id * INSTANCE_OFFSET`` (stuff: instance_id 0; things from 1; void =
        K); and the kept segments: ``masks`` [S, H, W] bool, ``labels``, ``scores`` (best query
        score), ``query_types`` (the type covering most of the segment's pixels), ``bboxes``
        (from the masks), ``is_thing`` [S] bool, ``segment_ids`` [S] (their value in
        ``sem_seg``).
    """
    num_q, num_k = _check_inputs(cls_logits, mask_logits, None, query_types)
    if len(thing_flags) != num_k:
        raise ValueError(f'thing_flags has {len(thing_flags)} entries but there are {num_k} '
                         'texts (metainfo["thing_flags"] must have one bool per text)')
    device = cls_logits.device
    H, W = mask_logits.shape[-2:]
    types = _query_types_or_unknown(query_types, num_q, device)
    scores, labels = cls_logits.sigmoid().max(-1)
    keep = torch.nonzero(scores > object_mask_thr, as_tuple=False).squeeze(1)
    keep = keep[scores[keep].argsort(descending=True)]
    panoptic = torch.full((H, W), num_k, dtype=torch.long, device=device)

    seg_masks: List[Tensor] = []
    seg_labels: List[int] = []
    seg_scores: List[float] = []
    seg_ids: List[int] = []
    seg_type_pixels: List[dict] = []
    stuff_segment = {}
    if keep.numel() > 0:
        probs = mask_logits[keep].sigmoid()  # [n, H, W]
        winner = (scores[keep][:, None, None] * probs).argmax(0)  # [H, W]
        instance_id = 1
        for i, q in enumerate(keep.tolist()):
            label = int(labels[q])
            own = probs[i] >= mask_thr
            won_area = int((winner == i).sum())
            own_area = int(own.sum())
            mask = (winner == i) & own
            area = int(mask.sum())
            if won_area == 0 or own_area == 0 or area == 0 or won_area / own_area < iou_thr:
                continue
            qtype = int(types[q])
            if bool(thing_flags[label]):
                segment_id = label + instance_id * INSTANCE_OFFSET
                instance_id += 1
            elif label in stuff_segment:  # stuff of one text: merged into one segment
                s = stuff_segment[label]
                panoptic[mask] = seg_ids[s]
                seg_masks[s] = seg_masks[s] | mask
                seg_type_pixels[s][qtype] = seg_type_pixels[s].get(qtype, 0) + area
                continue
            else:
                segment_id = label
                stuff_segment[label] = len(seg_ids)
            panoptic[mask] = segment_id
            seg_masks.append(mask)
            seg_labels.append(label)
            seg_scores.append(float(scores[q]))
            seg_ids.append(segment_id)
            seg_type_pixels.append({qtype: area})

    if seg_masks:
        masks = torch.stack(seg_masks)
    else:
        masks = torch.zeros((0, H, W), dtype=torch.bool, device=device)
    instances = InstanceData(
        masks=masks,
        labels=torch.tensor(seg_labels, dtype=torch.long, device=device),
        scores=torch.tensor(seg_scores, dtype=torch.float32, device=device),
        query_types=torch.tensor([max(p, key=p.get) for p in seg_type_pixels],
                                 dtype=torch.long, device=device),
        bboxes=mask2bbox(masks).float().reshape(-1, 4),
        is_thing=torch.tensor([bool(thing_flags[lb]) for lb in seg_labels],
                              dtype=torch.bool, device=device),
        segment_ids=torch.tensor(seg_ids, dtype=torch.long, device=device))
    return PixelData(sem_seg=panoptic[None]), instances


def postprocess_referring(cls_logits: Tensor, mask_logits: Tensor, boxes: Optional[Tensor],
                          query_types: Optional[Tensor]) -> InstanceData:
    """Referring segmentation: for each expression k, the query with the highest score for k.

    Args:
        cls_logits: [Q, K], K = number of expressions.
        mask_logits: [Q, H, W].
        boxes: [Q, 4] xyxy in the mask frame, or None (boxes then come from the masks).
        query_types: [Q] long, or None (then -1).

    Returns:
        InstanceData: one entry per expression, in the order of the texts: ``masks`` [K, H, W]
        bool, ``scores`` [K] (class probability), ``labels`` = arange(K), ``bboxes`` [K, 4],
        ``query_types`` [K].
    """
    num_q, num_k = _check_inputs(cls_logits, mask_logits, boxes, query_types)
    if num_q == 0:
        raise ValueError('cls_logits has no query: referring needs at least one prediction')
    types = _query_types_or_unknown(query_types, num_q, cls_logits.device)
    probs = cls_logits.sigmoid()
    scores, query_idx = probs.max(0)  # [K]
    masks = mask_logits[query_idx] > 0
    bboxes = boxes[query_idx].float() if boxes is not None else mask2bbox(masks).float()
    return InstanceData(
        masks=masks,
        scores=scores,
        labels=torch.arange(num_k, dtype=torch.long, device=cls_logits.device),
        bboxes=bboxes,
        query_types=types[query_idx])


def postprocess_foreground(cls_logits: Tensor, mask_logits: Tensor) -> PixelData:
    """Foreground (salient / dichotomous) segmentation: the mask of the best-scoring query.

    Training gives one mask per foreground sample (the foreground prompt text), matched to one
    query, so the query with the highest class probability for any text carries the map.

    Args:
        cls_logits: [Q, K] (K is usually 1: the foreground prompt).
        mask_logits: [Q, H, W].

    Returns:
        PixelData: ``sem_seg`` [1, H, W] long in {0, 1} (prob >= 0.5) and ``prob`` [1, H, W]
        float in [0, 1].
    """
    num_q, _ = _check_inputs(cls_logits, mask_logits)
    if num_q == 0:
        raise ValueError('cls_logits has no query: foreground needs at least one prediction')
    best = cls_logits.sigmoid().max(-1).values.argmax()
    prob = mask_logits[best].sigmoid()[None].float()
    return PixelData(sem_seg=(prob >= 0.5).long(), prob=prob)


def postprocess_detection(cls_logits: Tensor,
                          boxes: Tensor,
                          query_types: Optional[Tensor],
                          mask_logits: Optional[Tensor] = None,
                          max_per_image: int = 100) -> InstanceData:
    """Detection: top-k over queries x classes of the class probabilities (DINO inference).

    Args:
        cls_logits: [Q, K].
        boxes: [Q, 4] xyxy in the output frame.
        query_types: [Q] long, or None (then -1).
        mask_logits: [Q, H, W] or None; when given, ``masks`` are added (not used for scores).
        max_per_image: Number of kept predictions. Defaults to 100.

    Returns:
        InstanceData: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N], ``query_types`` [N] and,
        with ``mask_logits``, ``masks`` [N, H, W] bool; sorted by score.
    """
    if boxes is None:
        raise ValueError('boxes must be a Tensor [Q, 4] for detection post-processing')
    num_q, _ = _check_inputs(cls_logits, mask_logits, boxes, query_types)
    types = _query_types_or_unknown(query_types, num_q, cls_logits.device)
    scores, query_idx, labels = _topk_query_class(cls_logits, max_per_image)
    results = InstanceData(
        bboxes=boxes[query_idx].float(), scores=scores, labels=labels,
        query_types=types[query_idx])
    if mask_logits is not None:
        results.masks = mask_logits[query_idx] > 0
    return results


def postprocess_by_task(task: str,
                        cls_logits: Tensor,
                        mask_logits: Tensor,
                        boxes: Optional[Tensor],
                        query_types: Optional[Tensor],
                        thing_flags: Optional[Sequence[bool]] = None,
                        **task_cfg) -> dict:
    """Dispatch one image to its task's post-processing; return the data-sample fields to set.

    Args:
        task: One of ``mmquerymeld.utils.TASKS``.
        cls_logits: [Q, K] (the image's real vocabulary only).
        mask_logits: [Q, H, W] in the output frame.
        boxes: [Q, 4] xyxy in the output frame (or None where the task allows).
        query_types: [Q] long.
        thing_flags: K bools, required for ``panoptic`` (``metainfo['thing_flags']``).
        **task_cfg: Keyword arguments of the task's function (e.g. ``max_per_image``,
            ``object_mask_thr``, ``iou_thr``), typically ``test_cfg[task]``.

    Returns:
        dict: ``pred_sem_seg`` (semantic, foreground), ``pred_instances`` (instance, detection,
        referring, panoptic) and ``pred_panoptic_seg`` (panoptic).
    """
    if task == 'semantic':
        return dict(pred_sem_seg=postprocess_semantic(cls_logits, mask_logits, **task_cfg))
    if task == 'instance':
        return dict(pred_instances=postprocess_instance(cls_logits, mask_logits, boxes,
                                                        query_types, **task_cfg))
    if task == 'panoptic':
        if thing_flags is None:
            raise ValueError('panoptic post-processing needs metainfo["thing_flags"] (one bool '
                             'per text, from the evaluation dataset\'s metainfo)')
        pan, instances = postprocess_panoptic(cls_logits, mask_logits, query_types, thing_flags,
                                              **task_cfg)
        return dict(pred_panoptic_seg=pan, pred_instances=instances)
    if task == 'referring':
        return dict(pred_instances=postprocess_referring(cls_logits, mask_logits, boxes,
                                                         query_types, **task_cfg))
    if task == 'foreground':
        return dict(pred_sem_seg=postprocess_foreground(cls_logits, mask_logits, **task_cfg))
    if task == 'detection':
        return dict(pred_instances=postprocess_detection(cls_logits, boxes, query_types,
                                                         mask_logits, **task_cfg))
    raise ValueError(f'unknown task "{task}" (metainfo["task"]); expected one of semantic, '
                     'instance, panoptic, referring, foreground, detection')
