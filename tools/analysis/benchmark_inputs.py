"""Inputs of the side-by-side benchmark: synthetic vocabularies, training batches, predict inputs.

Both models get the same images and the same objects. QueryMeldNet's training samples go through
the project's own pipeline transforms (``ToUnifiedTargets`` + ``PackQueryMeldInputs``), so the
box-only representation is whatever the pipeline produces; Mask2Former's go through mmdet's
``PackDetInputs`` (thing instances + a stuff ``gt_seg_map``, as ``LoadPanopticAnnotations``).
"""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

#: QueryMeldNet training vocabulary: 80 texts, the last ``NUM_STUFF`` of them stuff.
NUM_TRAIN_TEXTS = 80
NUM_STUFF = 10
M2F_NUM_THINGS = 80  # mmdet's COCO panoptic label space: 80 things, then 53 stuff
_SYLLABLES = ('ka', 'lo', 'mi', 'ren', 'tu', 'sa', 'vo', 'pel', 'dor', 'fin', 'gra', 'hu', 'jet',
              'nor', 'qui', 'ban', 'cel', 'dru', 'mok', 'tas')


def synthetic_names(k: int) -> List[str]:
    """``k`` distinct pseudo-words of 2-4 syllables (deterministic), as class names."""
    names = []
    n = len(_SYLLABLES)
    for i in range(k):
        digits, j = [], i
        while True:
            digits.append(_SYLLABLES[j % n])
            j //= n
            if j == 0:
                break
        names.append(''.join(digits + ['a', 'x'][:max(0, 2 - len(digits))]))
    return names


def vocabulary(task: str, k: int) -> List[str]:
    """The texts of one image: ``k`` class names, ``k`` referring expressions, or the one
    foreground prompt."""
    if task == 'foreground':
        return ['foreground']
    names = synthetic_names(k)
    if task == 'referring':
        return [f'the {a} left of the {names[(i + 1) % k]}' for i, a in enumerate(names)]
    return names


# ---------------------------------------------------------------------------- training batches
def _scene(h: int, w: int, n_things: int, rng: np.random.Generator
           ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An image with ``n_things`` ellipses over two stuff bands.

    Returns:
        tuple: image ``[h, w, 3]`` uint8, thing masks ``[n, h, w]`` uint8, thing labels ``[n]``
        (in ``[0, NUM_TRAIN_TEXTS - NUM_STUFF)``), stuff map ``[h, w]`` (index of the stuff text
        in ``[NUM_TRAIN_TEXTS - NUM_STUFF, NUM_TRAIN_TEXTS)``, 255 elsewhere).
    """
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((n_things, h, w), dtype=np.uint8)
    for i in range(n_things):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        ry, rx = rng.uniform(0.05, 0.2) * h, rng.uniform(0.05, 0.2) * w
        masks[i] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    labels = rng.integers(0, NUM_TRAIN_TEXTS - NUM_STUFF, size=n_things)
    stuff = np.full((h, w), 255, dtype=np.uint8)
    first = NUM_TRAIN_TEXTS - NUM_STUFF
    stuff[:int(0.3 * h)] = first + int(rng.integers(0, NUM_STUFF // 2))
    stuff[int(0.7 * h):] = first + NUM_STUFF // 2 + int(rng.integers(0, NUM_STUFF // 2))
    stuff[masks.any(0)] = 255
    return img, masks, labels, stuff


def _boxes(h: int, w: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random xyxy boxes (sides 5-25% of the image)."""
    bw, bh = rng.uniform(0.05, 0.25, n) * w, rng.uniform(0.05, 0.25, n) * h
    x0, y0 = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
    return np.stack([x0, y0, x0 + bw, y0 + bh], 1).astype(np.float32)


def _box_masks(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(np.round(boxes).astype(int)):
        masks[i, y0:y1, x0:x1] = 1
    return masks


def _mask_boxes(masks: np.ndarray) -> np.ndarray:
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def _meta(h: int, w: int, idx: int) -> dict:
    return dict(img_id=idx, img_path=f'benchmark_{idx}.png', ori_shape=(h, w), img_shape=(h, w),
                scale_factor=(1.0, 1.0), flip=False, flip_direction=None)


def _pack_querymeld(img, task: str, boxes, labels, masks, stuff, idx: int) -> dict:
    from mmdet.registry import TRANSFORMS
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    h, w = img.shape[:2]
    names = synthetic_names(NUM_TRAIN_TEXTS)
    flags = [i < NUM_TRAIN_TEXTS - NUM_STUFF for i in range(NUM_TRAIN_TEXTS)]
    results = dict(img=img, task=task, source=f'benchmark_{task}',
                   source_meta=dict(classes=names, thing_flags=flags),
                   gt_bboxes=HorizontalBoxes(boxes), gt_bboxes_labels=labels.astype(np.int64),
                   gt_ignore_flags=np.zeros(len(boxes), dtype=bool), **_meta(h, w, idx))
    if masks is not None:
        results['gt_masks'] = BitmapMasks(masks, h, w)
    if stuff is not None:
        results['gt_seg_map'] = stuff
    results = TRANSFORMS.build(dict(type='ToUnifiedTargets'))(results)
    return TRANSFORMS.build(dict(type='PackQueryMeldInputs'))(results)


def _pack_mask2former(img, boxes, labels, masks, stuff, idx: int) -> dict:
    from mmdet.registry import TRANSFORMS
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    h, w = img.shape[:2]
    seg = np.full((h, w), 255, dtype=np.uint8) if stuff is None else \
        np.where(stuff == 255, 255,
                 stuff.astype(np.int64) - (NUM_TRAIN_TEXTS - NUM_STUFF) + M2F_NUM_THINGS
                 ).astype(np.uint8)
    results = dict(img=img, gt_bboxes=HorizontalBoxes(boxes),
                   gt_bboxes_labels=labels.astype(np.int64), gt_masks=BitmapMasks(masks, h, w),
                   gt_ignore_flags=np.zeros(len(boxes), dtype=bool), gt_seg_map=seg,
                   **_meta(h, w, idx))
    return TRANSFORMS.build(dict(type='PackDetInputs'))(results)


def training_batch(model_name: str, size: int, box_only: bool, num_things: int = 12,
                   num_boxes: int = 300, seed: int = 0) -> Dict[str, list]:
    """A batch of 2 images of ``size``² for ``model.train_step``.

    Image 0 (and image 1 unless ``box_only``) is a panoptic scene: ``num_things`` thing masks and
    two stuff bands. With ``box_only``, image 1 carries ``num_boxes`` boxes: for QueryMeldNet a
    ``detection`` sample without masks (``mask_valid`` False), for Mask2Former (which cannot
    train on boxes alone) an instance sample whose masks are the filled boxes.

    Returns:
        dict: ``inputs`` (list of uint8 ``[3, H, W]``) and ``data_samples``.
    """
    rng = np.random.default_rng(seed)
    packed = []
    for idx in range(2):
        if box_only and idx == 1:
            img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            boxes = _boxes(size, size, num_boxes, rng)
            labels = rng.integers(0, NUM_TRAIN_TEXTS - NUM_STUFF, size=num_boxes)
            if model_name == 'querymeld':
                packed.append(_pack_querymeld(img, 'detection', boxes, labels, None, None, idx))
            else:
                packed.append(_pack_mask2former(img, boxes, labels, _box_masks(boxes, size, size),
                                                None, idx))
            continue
        img, masks, labels, stuff = _scene(size, size, num_things, rng)
        boxes = _mask_boxes(masks)
        if model_name == 'querymeld':
            packed.append(_pack_querymeld(img, 'panoptic', boxes, labels, masks, stuff, idx))
        else:
            packed.append(_pack_mask2former(img, boxes, labels, masks, stuff, idx))
    return dict(inputs=[p['inputs'] for p in packed],
                data_samples=[p['data_samples'] for p in packed])


# ---------------------------------------------------------------------------- predict inputs
def predict_batch(model_name: str, task: str, texts: Sequence[str], size: Tuple[int, int],
                  ori_shape: Tuple[int, int], seed: int = 0) -> Dict[str, list]:
    """One image of ``size`` (h, w) whose original is ``ori_shape``, for ``model.test_step``.

    QueryMeldNet's sample carries ``texts``, ``task`` and (class tasks) ``thing_flags`` all
    True, so that every kept panoptic segment is a separate thing.
    """
    from mmdet.structures import DetDataSample
    h, w = size
    rng = np.random.default_rng(seed)
    img = torch.from_numpy(rng.integers(0, 256, size=(3, h, w), dtype=np.uint8))
    meta = dict(img_id=0, img_path='benchmark.png', img_shape=(h, w), ori_shape=tuple(ori_shape),
                scale_factor=(w / ori_shape[1], h / ori_shape[0]))
    if model_name == 'querymeld':
        meta.update(texts=list(texts), task=task)
        if task not in ('referring', 'foreground'):
            meta['thing_flags'] = [True] * len(texts)
    return dict(inputs=[img], data_samples=[DetDataSample(metainfo=meta)])


# ---------------------------------------------------------------- fixed panoptic segment count
def _tiles(n: int, h: int, w: int) -> List[Tuple[slice, slice]]:
    """``n`` tiles covering an ``h x w`` frame (rows of nearly equal tile counts)."""
    rows = max(1, int(round(math.sqrt(n))))
    tiles = []
    for r in range(rows):
        count = n // rows + (1 if r < n % rows else 0)
        y0, y1 = r * h // rows, (r + 1) * h // rows
        for c in range(count):
            tiles.append((slice(y0, y1), slice(c * w // count, (c + 1) * w // count)))
    return tiles


def _write_pattern(masks: torch.Tensor, n: int) -> List[int]:
    """Mask logits ``[B, Q, h, w]`` in place: -10 everywhere, +10 on tile i for query
    ``i * (Q // n)``; returns those query indices."""
    q = masks.shape[1]
    queries = [i * (q // n) for i in range(n)]
    masks.fill_(-10.0)
    for query, (ys, xs) in zip(queries, _tiles(n, masks.shape[-2], masks.shape[-1])):
        masks[:, query, ys, xs] = 10.0
    return queries


def fix_panoptic_segments(model, model_name: str, n: int) -> None:
    """Make exactly ``n`` panoptic segments survive post-processing, whatever the weights.

    The final layer's class and mask logits are overwritten in place just before the
    post-processing (same tensor shapes, so its cost is that of ``n`` segments): ``n`` queries
    get one confident thing class each (QueryMeldNet: sigmoid logit +5 for text ``i % K``, -20
    elsewhere; Mask2Former: softmax logit +20 for class ``i``, the others get +20 on
    "no object") and each owns one tile of an ``n``-tile partition of the mask frame (mask
    logits +10 on the tile, -10 elsewhere), so no segment loses to the overlap test.
    QueryMeldNet: around its post-processing module's ``predict`` (class logits ``[B, Q, K]``
    and 1/4-resolution mask logits ``[B, Q, h, w]``); Mask2Former: a forward hook on
    ``panoptic_head`` (its last-layer ``[B, Q, C+1]`` / ``[B, Q, h/4, w/4]``).
    """
    if model_name == 'mask2former':
        num_classes = model.panoptic_fusion_head.num_classes

        def hook(module, args, output):
            cls, masks = output[0][-1], output[1][-1]
            queries = _write_pattern(masks, n)
            cls.fill_(0.0)
            cls[..., num_classes] = 20.0
            for i, query in enumerate(queries):
                cls[:, query, num_classes] = 0.0
                cls[:, query, i % min(num_classes, M2F_NUM_THINGS)] = 20.0
            return output

        model.panoptic_head.register_forward_hook(hook)
        return
    post = [m for m in model.modules()
            if 'PostProcessor' in type(m).__name__ and hasattr(m, 'predict')]
    if len(post) != 1:
        raise RuntimeError(f'expected one post-processing module in {type(model).__name__}, '
                           f'found {[type(m).__name__ for m in post]}')
    original = post[0].predict

    def predict(cls_logits, mask_logits, *args, **kwargs):
        metas = args[1] if len(args) > 1 else kwargs['batch_img_metas']
        queries = _write_pattern(mask_logits, n)
        cls_logits.fill_(-20.0)
        for b, meta in enumerate(metas):
            for i, query in enumerate(queries):
                cls_logits[b, query, i % len(meta['texts'])] = 5.0
        return original(cls_logits, mask_logits, *args, **kwargs)

    post[0].predict = predict


def count_panoptic_segments(sample, void: int) -> int:
    """Number of segments in ``pred_panoptic_seg`` (the ``void`` value excluded: the number of
    texts for QueryMeldNet, ``num_classes`` for Mask2Former)."""
    ids = torch.unique(sample.pred_panoptic_seg.sem_seg)
    return int((ids != void).sum())
