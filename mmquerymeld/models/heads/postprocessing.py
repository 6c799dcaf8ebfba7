"""Per-task post-processing of one image's QueryMeldNet predictions (select, then upsample).

Every function takes one image's outputs: ``cls_logits`` [Q, K] (sigmoid space, query . text,
no background class; K = the image's real vocabulary, padding already removed),
``mask_logits`` [Q, h, w] with a :class:`MaskFrame` ``frame`` that maps them to the output frame
[H, W] (None: the masks already are in the output frame), ``boxes`` [Q, 4] xyxy in the output
frame, and ``query_types`` [Q] (``mmquerymeld.utils.QUERY_TYPES``: 0 learnable,
1 conditional). Each task picks its queries first and brings only those masks to full
resolution (Mask2Former / Mask DINO inference upsample all Q first); semantic and panoptic work
in row bands (:mod:`.dense_postprocessing`). Outputs follow docs/data_contract.md; every
instance-like output carries ``query_types`` so the thing/stuff split of the paper's section 4.1
can be measured.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmdet.structures.mask import mask2bbox
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from .dense_postprocessing import postprocess_panoptic, postprocess_semantic
from .mask_frame import MaskFrame
from .postprocess_utils import (check_inputs, frame_or_identity, query_types_or_unknown,
                                selected_masks)

__all__ = [
    'postprocess_semantic', 'postprocess_instance', 'postprocess_panoptic',
    'postprocess_referring', 'postprocess_foreground', 'postprocess_detection',
    'postprocess_by_task'
]


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


def postprocess_instance(cls_logits: Tensor,
                         mask_logits: Tensor,
                         boxes: Optional[Tensor],
                         query_types: Optional[Tensor],
                         max_per_image: int = 100,
                         frame: Optional[MaskFrame] = None) -> InstanceData:
    """Instance segmentation: top-k over queries x classes, rescored by mask confidence.

    Mask2Former / Mask DINO instance inference: ``score = class prob x mean mask prob inside the
    binary mask``; a query may appear with several labels. Only the selected queries' masks are
    upsampled (each once).

    Args:
        cls_logits: [Q, K].
        mask_logits: [Q, h, w] (the output frame itself when ``frame`` is None).
        boxes: [Q, 4] xyxy in the output frame, or None (boxes then come from the masks).
        query_types: [Q] long, or None (then -1).
        max_per_image: Number of kept predictions. Defaults to 100.
        frame: Maps ``mask_logits`` to the output frame; None: identity.

    Returns:
        InstanceData: ``masks`` [N, H, W] bool, ``bboxes`` [N, 4], ``scores`` [N], ``labels``
        [N] (index into texts), ``query_types`` [N]; N = min(max_per_image, Q x K), sorted by
        class score.
    """
    num_q, _ = check_inputs(cls_logits, mask_logits, boxes, query_types)
    types = query_types_or_unknown(query_types, num_q, cls_logits.device)
    cls_scores, query_idx, labels = _topk_query_class(cls_logits, max_per_image)
    masks, mask_conf = selected_masks(mask_logits, query_idx,
                                      frame_or_identity(frame, mask_logits), with_scores=True)
    bboxes = boxes[query_idx].float() if boxes is not None else mask2bbox(masks).float()
    return InstanceData(masks=masks, bboxes=bboxes, scores=cls_scores * mask_conf,
                        labels=labels, query_types=types[query_idx])


def postprocess_referring(cls_logits: Tensor, mask_logits: Tensor, boxes: Optional[Tensor],
                          query_types: Optional[Tensor],
                          frame: Optional[MaskFrame] = None) -> InstanceData:
    """Referring segmentation: for each expression k, the query with the highest score for k.

    Args:
        cls_logits: [Q, K], K = number of expressions.
        mask_logits: [Q, h, w] (the output frame itself when ``frame`` is None).
        boxes: [Q, 4] xyxy in the output frame, or None (boxes then come from the masks).
        query_types: [Q] long, or None (then -1).
        frame: Maps ``mask_logits`` to the output frame; None: identity.

    Returns:
        InstanceData: one entry per expression, in the order of the texts: ``masks`` [K, H, W]
        bool, ``scores`` [K] (class probability), ``labels`` = arange(K), ``bboxes`` [K, 4],
        ``query_types`` [K].
    """
    num_q, num_k = check_inputs(cls_logits, mask_logits, boxes, query_types)
    if num_q == 0:
        raise ValueError('cls_logits has no query: referring needs at least one prediction')
    types = query_types_or_unknown(query_types, num_q, cls_logits.device)
    scores, query_idx = cls_logits.sigmoid().max(0)  # [K]
    masks, _ = selected_masks(mask_logits, query_idx, frame_or_identity(frame, mask_logits))
    bboxes = boxes[query_idx].float() if boxes is not None else mask2bbox(masks).float()
    return InstanceData(
        masks=masks,
        scores=scores,
        labels=torch.arange(num_k, dtype=torch.long, device=cls_logits.device),
        bboxes=bboxes,
        query_types=types[query_idx])


def postprocess_foreground(cls_logits: Tensor, mask_logits: Tensor,
                           frame: Optional[MaskFrame] = None) -> PixelData:
    """Foreground (salient / dichotomous) segmentation: the mask of the best-scoring query.

    Training gives one mask per foreground sample (the foreground prompt text), matched to one
    query, so the query with the highest class probability for any text carries the map; only
    its mask is upsampled.

    Args:
        cls_logits: [Q, K] (K is usually 1: the foreground prompt).
        mask_logits: [Q, h, w] (the output frame itself when ``frame`` is None).
        frame: Maps ``mask_logits`` to the output frame; None: identity.

    Returns:
        PixelData: ``sem_seg`` [1, H, W] long in {0, 1} (prob >= 0.5) and ``prob`` [1, H, W]
        float in [0, 1].
    """
    num_q, _ = check_inputs(cls_logits, mask_logits)
    if num_q == 0:
        raise ValueError('cls_logits has no query: foreground needs at least one prediction')
    best = int(cls_logits.sigmoid().max(-1).values.argmax())
    frame = frame_or_identity(frame, mask_logits)
    prob = frame.upsample(mask_logits[best:best + 1]).sigmoid().float()
    return PixelData(sem_seg=(prob >= 0.5).long(), prob=prob)


def postprocess_detection(cls_logits: Tensor,
                          boxes: Tensor,
                          query_types: Optional[Tensor],
                          mask_logits: Optional[Tensor] = None,
                          max_per_image: int = 100,
                          with_masks: bool = True,
                          frame: Optional[MaskFrame] = None) -> InstanceData:
    """Detection: top-k over queries x classes of the class probabilities (DINO inference).

    Args:
        cls_logits: [Q, K].
        boxes: [Q, 4] xyxy in the output frame.
        query_types: [Q] long, or None (then -1).
        mask_logits: [Q, h, w] or None; with ``with_masks``, the kept predictions' ``masks`` are
            added (not used for scores; only the kept queries are upsampled).
        max_per_image: Number of kept predictions. Defaults to 100.
        with_masks: Add masks (docs/data_contract.md; the visualizer draws them). False: boxes
            only, nothing is upsampled (box AP needs no masks).
        frame: Maps ``mask_logits`` to the output frame; None: identity.

    Returns:
        InstanceData: ``bboxes`` [N, 4], ``scores`` [N], ``labels`` [N], ``query_types`` [N] and,
        with masks, ``masks`` [N, H, W] bool; sorted by score.
    """
    if boxes is None:
        raise ValueError('boxes must be a Tensor [Q, 4] for detection post-processing')
    num_q, _ = check_inputs(cls_logits, mask_logits, boxes, query_types)
    types = query_types_or_unknown(query_types, num_q, cls_logits.device)
    scores, query_idx, labels = _topk_query_class(cls_logits, max_per_image)
    results = InstanceData(
        bboxes=boxes[query_idx].float(), scores=scores, labels=labels,
        query_types=types[query_idx])
    if mask_logits is not None and with_masks:
        results.masks = selected_masks(mask_logits, query_idx,
                                       frame_or_identity(frame, mask_logits))[0]
    return results


def postprocess_by_task(task: str,
                        cls_logits: Tensor,
                        mask_logits: Tensor,
                        boxes: Optional[Tensor],
                        query_types: Optional[Tensor],
                        thing_flags: Optional[Sequence[bool]] = None,
                        frame: Optional[MaskFrame] = None,
                        **task_cfg) -> dict:
    """Dispatch one image to its task's post-processing; return the data-sample fields to set.

    Args:
        task: One of ``mmquerymeld.utils.TASKS``.
        cls_logits: [Q, K] (the image's real vocabulary only).
        mask_logits: [Q, h, w], mapped to the output frame by ``frame`` (None: already there).
        boxes: [Q, 4] xyxy in the output frame (or None where the task allows).
        query_types: [Q] long.
        thing_flags: K bools, required for ``panoptic`` (``metainfo['thing_flags']``).
        frame: The image's :class:`MaskFrame`, or None.
        **task_cfg: Keyword arguments of the task's function (e.g. ``max_per_image``,
            ``object_mask_thr``, ``iou_thr``, ``sharpen_temperature``), typically
            ``test_cfg[task]``.

    Returns:
        dict: ``pred_sem_seg`` (semantic, foreground), ``pred_instances`` (instance, detection,
        referring, panoptic) and ``pred_panoptic_seg`` (panoptic).
    """
    task_cfg['frame'] = frame
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
