"""``ToUnifiedTargets``: every task's annotations become (text, box, mask) triplets.

Paper section 3.3: a sample is ``(x, [(c_j, b_j, m_j)])`` where ``c_j`` is a class name or a free
text, ``b_j`` a box (derivable from the mask) and ``m_j`` a binary mask. The layout of the output
is fixed by ``docs/data_contract.md``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

from ...utils import TASKS, clean_class_name
from ..utils import IGNORE_INDEX_8BIT, IGNORE_INDEX_16BIT, masks_to_bboxes
from .box_only_masks import BoxOnlyMasks


def _take(masks: Optional[np.ndarray], idx: np.ndarray) -> Optional[np.ndarray]:
    """``masks[idx]``; None (box-only) stays None."""
    return None if masks is None else masks[idx]


def _dense(masks: Optional[np.ndarray], num: int, frame: Tuple[int, int]) -> np.ndarray:
    """The masks, or ``num`` all-zero ones for box-only instances that must be concatenated
    with masked rows (panoptic stuff, crowd regions)."""
    return np.zeros((num, *frame), np.uint8) if masks is None else masks


def _err(results: dict, msg: str) -> str:
    return f'ToUnifiedTargets [{results.get("source", "?")}] {results.get("img_path", "?")}: {msg}'


@TRANSFORMS.register_module()
class ToUnifiedTargets(BaseTransform):
    """Convert task-specific annotations into the unified targets of the data contract.

    * instance / detection / panoptic things: one triplet per (non-crowd) instance; box-only
      instances get ``mask_valid=False`` (a sample without any valid mask gets
      :class:`BoxOnlyMasks`, which stores no pixels; a mixed one all-zero rows);
    * panoptic stuff and semantic: one triplet per present class of ``gt_seg_map``, box from the
      mask;
    * referring: one triplet per expression; ``texts[i]`` is one expression of instance ``i``,
      sampled at random every time (several expressions per mask in the data);
    * foreground: one triplet with the foreground prompt.

    For class-based tasks the vocabulary ``texts`` is the dataset's class names; when there are
    more than ``max_texts`` classes it is all positives plus randomly sampled negatives up to
    ``max_texts``, in random order, and ``labels`` index into it (LVIS's verified-absent
    ``neg_labels`` are taken as negatives first).

    Required Keys: task, source_meta (from ``SetSourceInfo``), img_shape, and the task's
    annotation keys (gt_bboxes / gt_bboxes_labels / gt_masks / gt_ignore_flags /
    gt_instance_table, or gt_seg_map).

    Modified Keys: gt_bboxes (HorizontalBoxes [N, 4]), gt_bboxes_labels (int64 [N], index into
    texts), gt_masks (BitmapMasks [N, H, W]; :class:`BoxOnlyMasks` when no mask is valid),
    gt_seg_map (kept only with ``keep_sem_seg``, values
    are text indices), gt_ignore_flags (removed).

    Added Keys: gt_mask_valid (bool [N]), texts (list[str]), thing_flags (list[bool], when the
    source metainfo tells things from stuff), seg_ignore_index (with ``keep_sem_seg``),
    gt_crowd_flags (bool [N], panoptic evaluation only: with ``test_mode`` and the crowd
    segments of ``LoadCocoPanopticAnnotations(with_crowd=True)``, the crowd regions are
    appended as rows flagged True; packed as ``gt_instances.ignore_flags`` for
    :class:`PanopticQualityMetric`).

    Args:
        max_texts: cap on the vocabulary of class-based tasks; None keeps all classes. Also caps
            the number of expressions of a referring sample (a random subset is kept).
        min_mask_area: instances whose (valid) mask has fewer pixels are dropped.
        min_box_size: box-only instances with a side below this are dropped.
        recompute_bboxes: replace the boxes of instances with valid masks by the masks' tight
            boxes (keeps mask/box agreement after crops).
        keep_sem_seg: keep ``gt_seg_map`` (for ``gt_sem_seg`` in evaluation samples).
        test_mode: evaluation: no random sampling (all classes, every expression in order, the
            first expression of instances with several).
        fg_prompt: text of the foreground class; default: the source's first class name, or
            ``'foreground'``.
        clean_names: turn class names into prompt text (``'traffic_light'`` -> ``'traffic light'``).
    """

    def __init__(self, max_texts: Optional[int] = None, min_mask_area: int = 1,
                 min_box_size: float = 1.0, recompute_bboxes: bool = True,
                 keep_sem_seg: bool = False, test_mode: bool = False,
                 fg_prompt: Optional[str] = None, clean_names: bool = True) -> None:
        if max_texts is not None and max_texts < 1:
            raise ValueError(f'max_texts must be positive or None, got {max_texts}')
        self.max_texts = max_texts
        self.min_mask_area = min_mask_area
        self.min_box_size = min_box_size
        self.recompute_bboxes = recompute_bboxes
        self.keep_sem_seg = keep_sem_seg
        self.test_mode = test_mode
        self.fg_prompt = fg_prompt
        self.clean_names = clean_names

    # ------------------------------------------------------------------ helpers
    def _frame(self, results: dict) -> Tuple[int, int]:
        """(h, w) of the annotation frame: the masks' / seg map's, else the image's (training)
        or the original image's (``test_mode``: annotations are loaded after the resize)."""
        if results.get('gt_masks') is not None:
            m = results['gt_masks']
            return int(m.height), int(m.width)
        if results.get('gt_seg_map') is not None:
            return tuple(results['gt_seg_map'].shape[:2])  # type: ignore[return-value]
        key = 'ori_shape' if self.test_mode and 'ori_shape' in results else 'img_shape'
        return tuple(results[key][:2])  # type: ignore[return-value]

    def _classes(self, results: dict) -> Tuple[List[str], Optional[List[bool]]]:
        meta = results.get('source_meta') or {}
        classes = meta.get('classes')
        if classes is None:
            raise KeyError(_err(results, 'the source metainfo has no "classes" (wrap the '
                                'dataset in MultiSourceDataset or add SetSourceInfo first)'))
        names = [clean_class_name(c) if self.clean_names else c for c in classes]
        flags = meta.get('thing_flags')
        return names, (list(flags) if flags is not None else None)

    def _vocabulary(self, results: dict, positives: np.ndarray, names: List[str],
                    flags: Optional[List[bool]]) -> Tuple[List[str], Optional[List[bool]],
                                                          np.ndarray]:
        """Choose the sample's vocabulary; returns (texts, thing_flags, class->text index map)."""
        k = len(names)
        remap = np.full(k + 1, -1, dtype=np.int64)
        if self.test_mode or self.max_texts is None or k <= self.max_texts:
            remap[:k] = np.arange(k)
            return list(names), flags, remap
        pos = np.unique(positives)
        n_neg = max(0, self.max_texts - len(pos))
        # LVIS: classes verified absent from the image (neg_labels) are the first negatives
        verified = np.setdiff1d(np.asarray(results.get('neg_labels', []), dtype=np.int64), pos)
        verified = verified[(verified >= 0) & (verified < k)]
        neg_a = np.random.permutation(verified)[:n_neg]
        pool = np.setdiff1d(np.arange(k), np.concatenate([pos, neg_a]))
        n_b = min(n_neg - len(neg_a), len(pool))
        neg_b = np.random.choice(pool, size=n_b, replace=False) if n_b > 0 else \
            np.zeros(0, dtype=np.int64)
        chosen = np.concatenate([pos, neg_a, neg_b]).astype(np.int64)
        chosen = chosen[np.random.permutation(len(chosen))]
        remap[chosen] = np.arange(len(chosen))
        texts = [names[c] for c in chosen]
        sub_flags = [flags[c] for c in chosen] if flags is not None else None
        return texts, sub_flags, remap

    @staticmethod
    def _to_bitmap(results: dict, frame: Tuple[int, int]) -> Optional[np.ndarray]:
        """The masks as uint8 ``[N, H, W]``; None for box-only samples (no pixels)."""
        masks = results.get('gt_masks')
        if masks is None or isinstance(masks, BoxOnlyMasks):
            return None
        if isinstance(masks, PolygonMasks):
            masks = masks.to_bitmap()
        return np.asarray(masks.masks if isinstance(masks, BitmapMasks) else masks,
                          dtype=np.uint8).reshape(-1, *frame)

    def _instances(self, results: dict, frame: Tuple[int, int]
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Optional[list]]:
        """Non-ignored instances: (masks [N,H,W] u8 or None when no instance has one, boxes
        [N,4], labels or rows [N], mask_valid [N], table rows or None)."""
        h, w = frame
        boxes = results.get('gt_bboxes')
        boxes = np.zeros((0, 4), np.float32) if boxes is None else \
            np.asarray(boxes.numpy() if hasattr(boxes, 'numpy') else boxes,
                       dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        labels = np.asarray(results.get('gt_bboxes_labels', np.zeros(n)), dtype=np.int64)
        masks = self._to_bitmap(results, frame)
        table = results.get('gt_instance_table')
        if masks is None:
            valid = np.zeros(n, dtype=bool)
        elif table is not None:
            valid = np.array([table[r]['mask_valid'] for r in labels], dtype=bool)
        else:
            valid = np.ones(n, dtype=bool)
        n_masks = n if masks is None else len(masks)
        if n_masks != n or len(labels) != n:
            raise ValueError(_err(results, f'{n} boxes, {len(labels)} labels and '
                                  f'{n_masks} masks disagree'))
        ignore = np.asarray(results.get('gt_ignore_flags', np.zeros(n, bool)), dtype=bool)
        keep = ~ignore
        boxes, labels, valid = boxes[keep], labels[keep], valid[keep]
        if masks is None:  # box-only: no pixels to filter or derive boxes from
            wh = boxes[:, 2:] - boxes[:, :2]
            ok = (wh >= self.min_box_size).all(axis=1)
            return None, boxes[ok], labels[ok], valid[ok], table
        masks = masks[keep]
        # drop what augmentation emptied; recompute boxes from masks (section 3.3: b from m)
        areas = masks.reshape(len(masks), h * w).sum(axis=1)
        mask_boxes = masks_to_bboxes(masks.astype(bool))
        if self.recompute_bboxes and len(boxes):
            boxes = np.where(valid[:, None], mask_boxes, boxes)
        wh = boxes[:, 2:] - boxes[:, :2]
        ok = np.where(valid, areas >= self.min_mask_area,
                      (wh >= self.min_box_size).all(axis=1))
        masks[~valid] = 0
        return masks[ok], boxes[ok], labels[ok], valid[ok], table

    def _seg_classes(self, results: dict, seg: np.ndarray, classes: Sequence[int]
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One mask per class of ``classes`` present in ``seg``: (masks, boxes, class ids)."""
        present = [c for c in np.unique(seg).tolist() if c in set(classes)]
        masks = np.stack([(seg == c) for c in present]).astype(np.uint8) if present else \
            np.zeros((0, ) + seg.shape, dtype=np.uint8)
        areas = masks.reshape(len(masks), seg.shape[0] * seg.shape[1]).sum(axis=1)
        ok = areas >= self.min_mask_area
        masks = masks[ok]
        return masks, masks_to_bboxes(masks.astype(bool)), \
            np.asarray(present, dtype=np.int64)[ok]

    # ------------------------------------------------------------------ tasks
    def _class_task(self, results: dict, task: str, frame: Tuple[int, int]) -> dict:
        names, flags = self._classes(results)
        k = len(names)
        if task == 'semantic':
            seg = self._seg_map(results)
            ignore = int(results.get('ignore_index', self._default_ignore(seg)))
            bad = np.setdiff1d(np.unique(seg), np.append(np.arange(k), ignore))
            if len(bad):
                raise ValueError(_err(results, f'label values {bad.tolist()} outside the '
                                      f'{k} classes (ignore {ignore})'))
            masks, boxes, cls = self._seg_classes(results, seg, range(k))
            valid = np.ones(len(masks), dtype=bool)
        else:
            masks, boxes, cls, valid, table = self._instances(results, frame)
            if table is not None:
                cls = np.array([table[r]['label'] for r in cls], dtype=np.int64)
            if len(cls) and (cls.min() < 0 or cls.max() >= k):
                raise ValueError(_err(results, f'class labels {cls.tolist()} outside the '
                                      f'{k} classes'))
            if task == 'panoptic' and results.get('gt_seg_map') is not None:
                if flags is None:
                    raise KeyError(_err(results, 'panoptic sources need thing/stuff metainfo '
                                        '(thing_classes + stuff_classes, or thing_flags)'))
                stuff = [c for c in range(k) if not flags[c]]
                s_masks, s_boxes, s_cls = self._seg_classes(results, self._seg_map(results),
                                                            stuff)
                masks = np.concatenate([_dense(masks, len(boxes), frame), s_masks])
                boxes = np.concatenate([boxes, s_boxes])
                cls = np.concatenate([cls, s_cls])
                valid = np.concatenate([valid, np.ones(len(s_masks), dtype=bool)])
        crowd = np.zeros(len(cls), dtype=bool)
        if task == 'panoptic' and self.test_mode and results.get('gt_crowd_masks') is not None:
            # evaluation only: crowd regions as extra rows flagged in gt_crowd_flags
            # (panopticapi pq_compute: crowd is neither matched, FN, nor void)
            c_masks = np.asarray(results['gt_crowd_masks'], dtype=np.uint8).reshape(-1, *frame)
            c_cls = np.asarray(results['gt_crowd_labels'], dtype=np.int64).reshape(-1)
            if len(c_cls) != len(c_masks) or (len(c_cls) and (c_cls.min() < 0
                                                              or c_cls.max() >= k)):
                raise ValueError(_err(results, f'{len(c_masks)} crowd masks with crowd labels '
                                      f'{c_cls.tolist()} (expected one label in [0, {k}) each)'))
            masks = np.concatenate([_dense(masks, len(boxes), frame), c_masks])
            boxes = np.concatenate([boxes, masks_to_bboxes(c_masks.astype(bool))])
            cls = np.concatenate([cls, c_cls])
            valid = np.concatenate([valid, np.ones(len(c_cls), dtype=bool)])
            crowd = np.concatenate([crowd, np.ones(len(c_cls), dtype=bool)])
        texts, sub_flags, remap = self._vocabulary(results, cls, names, flags)
        labels = remap[cls] if len(cls) else cls
        out = dict(masks=masks, boxes=boxes, labels=labels, valid=valid, texts=texts)
        if crowd.any():
            out['crowd'] = crowd
        if sub_flags is not None:
            out['thing_flags'] = [bool(f) for f in sub_flags]
        elif task in ('instance', 'detection'):
            out['thing_flags'] = [True] * len(texts)
        if self.keep_sem_seg and results.get('gt_seg_map') is not None:
            seg = self._seg_map(results)
            ignore = int(results.get('ignore_index', self._default_ignore(seg)))
            seg64 = seg.astype(np.int64)
            inside = (seg64 != ignore) & (seg64 < k)
            idx = np.full(seg.shape, -1, dtype=np.int64)
            idx[inside] = remap[seg64[inside]]  # class id -> text index (-1: not in texts)
            out['sem_seg'] = np.where(idx >= 0, idx, ignore).astype(seg.dtype)
            out['ignore'] = ignore
        return out

    def _referring(self, results: dict, frame: Tuple[int, int]) -> dict:
        masks, boxes, rows, valid, table = self._instances(results, frame)
        if table is None:
            raise KeyError(_err(results, 'referring samples need instance texts (load them '
                                'with LoadQMAnnotations from a dataset giving "texts")'))
        texts = []
        keep = []
        for i, r in enumerate(rows):
            options = table[r]['texts']
            if not options:
                continue
            keep.append(i)
            if self.test_mode or len(options) == 1:
                texts.append(options[0])
            else:
                texts.append(options[np.random.randint(len(options))])
        keep = np.asarray(keep, dtype=np.int64)
        masks, boxes, valid = _take(masks, keep), boxes[keep], valid[keep]
        if not self.test_mode and self.max_texts is not None and len(texts) > self.max_texts:
            sel = np.sort(np.random.choice(len(texts), self.max_texts, replace=False))
            masks, boxes, valid = _take(masks, sel), boxes[sel], valid[sel]
            texts = [texts[i] for i in sel]
        return dict(masks=masks, boxes=boxes, labels=np.arange(len(texts), dtype=np.int64),
                    valid=valid, texts=texts)

    def _foreground(self, results: dict, frame: Tuple[int, int]) -> dict:
        seg = self._seg_map(results)
        meta = results.get('source_meta') or {}
        prompt = self.fg_prompt or (meta.get('classes') or ['foreground'])[0]
        fg = (seg == 1).astype(np.uint8)
        if fg.sum() >= self.min_mask_area:
            masks = fg[None]
        else:
            masks = np.zeros((0, ) + seg.shape, dtype=np.uint8)
        out = dict(masks=masks, boxes=masks_to_bboxes(masks.astype(bool)),
                   labels=np.zeros(len(masks), dtype=np.int64),
                   valid=np.ones(len(masks), dtype=bool), texts=[prompt])
        if self.keep_sem_seg:
            out['sem_seg'], out['ignore'] = seg, int(results.get('ignore_index', 255))
        return out

    @staticmethod
    def _default_ignore(seg: np.ndarray) -> int:
        return IGNORE_INDEX_8BIT if seg.dtype == np.uint8 else IGNORE_INDEX_16BIT

    @staticmethod
    def _seg_map(results: dict) -> np.ndarray:
        seg = results.get('gt_seg_map')
        if seg is None:
            raise KeyError(_err(results, f'task {results.get("task")!r} needs "gt_seg_map" '
                                '(load it with LoadSemSegAnnotations)'))
        return np.asarray(seg)

    # ------------------------------------------------------------------ main
    def transform(self, results: dict) -> dict:
        task = results.get('task')
        if task not in TASKS:
            raise KeyError(_err(results, f'unknown or missing task {task!r} (expected one of '
                                f'{TASKS}; SetSourceInfo / MultiSourceDataset sets it)'))
        frame = self._frame(results)
        if task == 'referring':
            out = self._referring(results, frame)
        elif task == 'foreground':
            out = self._foreground(results, frame)
        else:
            out = self._class_task(results, task, frame)
        h, w = frame
        boxes = np.asarray(out['boxes'], np.float32).reshape(-1, 4)
        valid = np.asarray(out['valid'], dtype=bool)
        if out['masks'] is None or (len(valid) and not valid.any()):
            # no valid mask: a placeholder without pixels (docs/data_contract.md, box-only)
            results['gt_masks'] = BoxOnlyMasks(len(boxes), h, w)
        else:
            masks = out['masks'].astype(np.uint8).reshape(-1, h, w)
            results['gt_masks'] = BitmapMasks(masks, h, w)
        results['gt_bboxes'] = HorizontalBoxes(boxes)
        results['gt_bboxes_labels'] = np.asarray(out['labels'], dtype=np.int64)
        results['gt_mask_valid'] = valid
        results['texts'] = list(out['texts'])
        if 'thing_flags' in out:
            results['thing_flags'] = out['thing_flags']
        else:
            results.pop('thing_flags', None)
        for key in ('gt_ignore_flags', 'gt_instance_table', 'gt_crowd_masks', 'gt_crowd_labels',
                    'gt_crowd_flags'):
            results.pop(key, None)
        if 'crowd' in out:
            results['gt_crowd_flags'] = np.asarray(out['crowd'], dtype=bool)
        if self.keep_sem_seg and 'sem_seg' in out:
            results['gt_seg_map'] = out['sem_seg']
            results['seg_ignore_index'] = out['ignore']
            results['ignore_index'] = out['ignore']
        else:
            results.pop('gt_seg_map', None)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(max_texts={self.max_texts}, '
                f'min_mask_area={self.min_mask_area}, keep_sem_seg={self.keep_sem_seg}, '
                f'test_mode={self.test_mode})')
