"""Panoptic quality, written from its definition (Kirillov et al. 2019, "Panoptic Segmentation",
section 4) with the matching and void/crowd rules of panopticapi's ``pq_compute`` (which is not
installable here).

Per image: a gt segment and a predicted segment of the same category match when their IoU > 0.5
(unique by construction); pixels covered by no gt segment are void: they are removed from the
union of a match, and an unmatched predicted segment that is more than 50% void or crowd (of its
category) is not a false positive. Crowd gt segments are never matched and never false negatives.
Per category: PQ = sum(IoU of TPs) / (TP + FP/2 + FN/2), SQ = sum(IoU) / TP, RQ = TP / (TP +
FP/2 + FN/2); PQ / SQ / RQ are averaged over the categories with TP + FP + FN > 0.
"""
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import Tensor


@dataclass
class PanopticImageStats:
    """Matching result of one image.

    Attributes:
        per_label: ``label -> [iou_sum, tp, fp, fn]`` for every label seen in gt or prediction
            (labels index the sample's vocabulary).
        matches: ``(gt_index, pred_value)`` per true positive: the row of the gt mask and the
            pixel value of the matched predicted segment in the panoptic map.
    """
    per_label: Dict[int, List[float]] = field(default_factory=dict)
    matches: List[Tuple[int, int]] = field(default_factory=list)

    def _add(self, label: int, slot: int, value: float) -> None:
        self.per_label.setdefault(label, [0.0, 0, 0, 0])[slot] += value


def gt_id_map(gt_masks: Tensor) -> Tensor:
    """Rasterise gt masks into one id map; where masks overlap, the first mask wins.

    Args:
        gt_masks: Bool tensor ``[N, H, W]``.

    Returns:
        Long tensor ``[H, W]``: 0 = void (no gt segment), ``i + 1`` = gt segment ``i``.
    """
    if gt_masks.shape[0] == 0:
        return torch.zeros(gt_masks.shape[-2:], dtype=torch.long)
    covered = gt_masks.any(0)
    first = gt_masks.to(torch.uint8).argmax(0)  # index of the first True
    return torch.where(covered, first + 1, torch.zeros_like(first))


def panoptic_image_stats(gt_masks: Tensor, gt_labels: Tensor, pan_seg: Tensor, void_label: int,
                         gt_crowd: Optional[Tensor] = None,
                         label_divisor: int = 1000) -> PanopticImageStats:
    """Match the segments of one image as panopticapi's ``pq_compute_single_core`` does.

    Args:
        gt_masks: Bool ``[N, H, W]``, one mask per gt segment.
        gt_labels: Long ``[N]``, category of each gt segment (index into the vocabulary).
        pan_seg: Long ``[H, W]``, predicted panoptic map, ``label + inst_id * label_divisor``;
            pixels whose label (``value % label_divisor``) equals ``void_label`` are unassigned.
        void_label: The void label (``len(texts)``).
        gt_crowd: Optional bool ``[N]``, True for crowd gt segments.
        label_divisor: ``INSTANCE_OFFSET``.

    Returns:
        The image's :class:`PanopticImageStats`.
    """
    num_gt = gt_masks.shape[0]
    gt_labels = gt_labels.long().reshape(-1)
    crowd = (torch.zeros(num_gt, dtype=torch.bool) if gt_crowd is None
             else gt_crowd.bool().reshape(-1))

    # predicted segments: every distinct non-void value of the panoptic map
    pan_seg = pan_seg.long()
    values, inverse = torch.unique(pan_seg, return_inverse=True)
    nonvoid = (values % label_divisor) != void_label
    seg_of_value = torch.cumsum(nonvoid.long(), 0) * nonvoid.long()  # 0 for void, else 1..P
    pred_values = values[nonvoid].tolist()
    num_pred = len(pred_values)
    pred_ids = seg_of_value[inverse]

    gt_ids = gt_id_map(gt_masks)
    joint = (gt_ids * (num_pred + 1) + pred_ids).reshape(-1)
    inter = torch.bincount(joint, minlength=(num_gt + 1) * (num_pred + 1)).reshape(
        num_gt + 1, num_pred + 1)
    gt_area = inter.sum(1)
    pred_area = inter.sum(0)
    pred_labels = [v % label_divisor for v in pred_values]

    stats = PanopticImageStats()
    gt_matched, pred_matched = set(), set()
    for g, p in torch.nonzero(inter[1:, 1:] > 0).tolist():
        if bool(crowd[g]) or int(gt_labels[g]) != pred_labels[p]:
            continue
        i = int(inter[g + 1, p + 1])
        union = int(pred_area[p + 1]) + int(gt_area[g + 1]) - i - int(inter[0, p + 1])
        iou = i / union
        if iou > 0.5:
            label = int(gt_labels[g])
            stats._add(label, 0, iou)
            stats._add(label, 1, 1)
            gt_matched.add(g)
            pred_matched.add(p)
            stats.matches.append((g, pred_values[p]))

    crowd_by_label: Dict[int, List[int]] = {}
    for g in range(num_gt):
        label = int(gt_labels[g])
        if bool(crowd[g]):
            crowd_by_label.setdefault(label, []).append(g)
            continue
        if g not in gt_matched and int(gt_area[g + 1]) > 0:
            stats._add(label, 3, 1)

    for p in range(num_pred):
        if p in pred_matched:
            continue
        label = pred_labels[p]
        ignored = int(inter[0, p + 1])
        ignored += sum(int(inter[g + 1, p + 1]) for g in crowd_by_label.get(label, []))
        if ignored / int(pred_area[p + 1]) > 0.5:
            continue
        stats._add(label, 2, 1)
    return stats


def pq_average(per_category: Dict[str, List[float]], isthing: Dict[str, bool],
               subset: Optional[bool] = None) -> Dict[str, float]:
    """Average PQ / SQ / RQ over categories, as panopticapi's ``PQStat.pq_average``.

    Args:
        per_category: ``name -> [iou_sum, tp, fp, fn]`` accumulated over the dataset.
        isthing: ``name -> bool``.
        subset: None for all categories, True for things only, False for stuff only.

    Returns:
        ``{'pq', 'sq', 'rq'}`` as fractions in [0, 1] and ``'n'``, the number of categories
        averaged (those with TP + FP + FN > 0); all zero when ``n == 0``.
    """
    pq = sq = rq = 0.0
    n = 0
    for name, (iou, tp, fp, fn) in per_category.items():
        if subset is not None and isthing[name] != subset:
            continue
        if tp + fp + fn == 0:
            continue
        n += 1
        denom = tp + 0.5 * fp + 0.5 * fn
        pq += iou / denom
        sq += iou / tp if tp else 0.0
        rq += tp / denom
    if n == 0:
        return dict(pq=0.0, sq=0.0, rq=0.0, n=0)
    return dict(pq=pq / n, sq=sq / n, rq=rq / n, n=n)


def merge_category_stats(items: Iterable[Dict[str, List[float]]]) -> Dict[str, List[float]]:
    """Sum ``name -> [iou_sum, tp, fp, fn]`` dicts over images."""
    total: Dict[str, List[float]] = {}
    for item in items:
        for name, vals in item.items():
            acc = total.setdefault(name, [0.0, 0, 0, 0])
            for k in range(4):
                acc[k] += vals[k]
    return total
