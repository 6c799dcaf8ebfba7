"""Crafted evaluation samples shared by the metric tests (docs/data_contract.md layout)."""
from typing import List, Optional, Sequence

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData

TEXTS = ['cat', 'dog', 'sky']
FLAGS = [True, True, False]


def box_mask(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[rows, cols] = True
    return m


def panoptic_sample(h: int, w: int, gt_masks: Sequence[np.ndarray], gt_labels: Sequence[int],
                    pan: np.ndarray, query_types: Optional[Sequence[int]] = None,
                    crowd: Optional[Sequence[bool]] = None, texts: Sequence[str] = TEXTS,
                    flags: Optional[Sequence[bool]] = FLAGS, img_path: str = 'img.png',
                    source: Optional[str] = None) -> DetDataSample:
    meta = dict(img_path=img_path, ori_shape=(h, w), img_shape=(h, w), texts=list(texts),
                task='panoptic')
    if flags is not None:
        meta['thing_flags'] = list(flags)
    if source is not None:
        meta['source'] = source
    s = DetDataSample(metainfo=meta)
    gt = InstanceData()
    gt.masks = BitmapMasks(np.stack(gt_masks).astype(np.uint8), h, w)
    gt.labels = torch.as_tensor(gt_labels, dtype=torch.long)
    if crowd is not None:
        gt.ignore_flags = torch.as_tensor(crowd, dtype=torch.bool)
    s.gt_instances = gt
    s.pred_panoptic_seg = PixelData(sem_seg=torch.as_tensor(pan, dtype=torch.long)[None])
    if query_types is not None:
        s.pred_instances = InstanceData(query_types=torch.as_tensor(query_types))
    return s


def panoptic_case() -> List[DetDataSample]:
    """Two images with hand-computed PQ (see test_panoptic_metric.py for the arithmetic)."""
    # image 1, 10x10; texts cat dog sky; void label 3
    h = w = 10
    g_cat = box_mask(h, w, slice(0, 5), slice(0, 5))
    g_dog = box_mask(h, w, slice(0, 5), slice(5, 10))
    g_sky = box_mask(h, w, slice(5, 9), slice(0, 10))  # row 9 is void
    pan = np.full((h, w), 3, dtype=np.int64)
    pan[0:5, 0:4] = 0 + 1 * 1000  # cat, inst 1: IoU 20/25 = 0.8 with g_cat
    pan[0:5, 4] = 0 + 4 * 1000  # cat, inst 4: unmatched, not void -> FP
    pan[0:2, 5:10] = 1 + 2 * 1000  # dog, inst 2: IoU 10/25 -> FP, and g_dog FN
    pan[5:10, :] = 2 + 3 * 1000  # sky, inst 3: 40 / (50 + 40 - 40 - 10 void) = 1.0
    s1 = panoptic_sample(h, w, [g_cat, g_dog, g_sky], [0, 1, 2], pan,
                         query_types=[1, 1, 0, 0], img_path='img1.png')
    # image 2, 8x8: crowd cat, mostly-void prediction
    h = w = 8
    g_sky = box_mask(h, w, slice(0, 4), slice(0, 8))
    g_crowd = box_mask(h, w, slice(4, 6), slice(0, 4))
    g_dog = box_mask(h, w, slice(6, 8), slice(0, 2))
    pan = np.full((h, w), 3, dtype=np.int64)
    pan[0:4, :] = 2 + 1000  # sky inst 1 (+4 void px below): 32 / (36 + 32 - 32 - 4) = 1.0
    pan[4, 4:8] = 2 + 1000
    pan[6:8, :] = 2 + 2000  # sky inst 2: unmatched, 12/16 void -> not FP
    pan[4:6, 0:4] = 0 + 3000  # cat inst 3: 8 crowd + 4 void of 12 -> not FP
    pan[5, 4:8] = 0 + 3000
    s2 = panoptic_sample(h, w, [g_sky, g_crowd, g_dog], [2, 0, 1], pan,
                         query_types=[1, 0, 1], crowd=[False, True, False], img_path='img2.png')
    return [s1, s2]


def referring_case() -> List[DetDataSample]:
    """Three expressions over two images: IoUs 1, 1/3, 3/4; I = 8, 4, 9; U = 8, 12, 12."""
    h = w = 4
    s1 = DetDataSample(metainfo=dict(img_path='r1.png', ori_shape=(h, w), task='referring',
                                     texts=['top half', 'left column']))
    gt = np.stack([box_mask(h, w, slice(0, 2), slice(0, 4)), box_mask(h, w, slice(0, 4),
                                                                       slice(0, 1))])
    pred = np.stack([box_mask(h, w, slice(0, 2), slice(0, 4)), box_mask(h, w, slice(0, 4),
                                                                         slice(0, 3))])
    s1.gt_instances = InstanceData(masks=BitmapMasks(gt.astype(np.uint8), h, w),
                                   labels=torch.arange(2))
    # float probabilities: thresholded at 0.5
    s1.pred_instances = InstanceData(masks=torch.from_numpy(pred).float() * 0.9,
                                     labels=torch.arange(2), scores=torch.ones(2))
    s2 = DetDataSample(metainfo=dict(img_path='r2.png', ori_shape=(h, w), task='referring',
                                     texts=['left block']))
    s2.gt_instances = InstanceData(
        masks=BitmapMasks(box_mask(h, w, slice(0, 4), slice(0, 3))[None].astype(np.uint8), h, w),
        labels=torch.arange(1))
    s2.pred_instances = InstanceData(
        masks=torch.from_numpy(box_mask(h, w, slice(0, 3), slice(0, 3)))[None],
        labels=torch.arange(1), scores=torch.ones(1))
    return [s1, s2]


def foreground_sample(gt: np.ndarray, prob: np.ndarray, binary: Optional[np.ndarray] = None,
                      img_path: str = 'f.png', source: Optional[str] = None) -> DetDataSample:
    meta = dict(img_path=img_path, ori_shape=gt.shape, task='foreground', texts=['foreground'])
    if source is not None:
        meta['source'] = source
    s = DetDataSample(metainfo=meta)
    s.gt_sem_seg = PixelData(sem_seg=torch.as_tensor(gt, dtype=torch.long)[None])
    pred = PixelData(prob=torch.as_tensor(prob, dtype=torch.float32)[None])
    if binary is not None:
        pred.sem_seg = torch.as_tensor(binary, dtype=torch.long)[None]
    s.pred_sem_seg = pred
    return s


def semantic_sample(gt: np.ndarray, pred: np.ndarray, texts: Sequence[str],
                    img_path: str = 's.png', source: Optional[str] = None) -> DetDataSample:
    meta = dict(img_path=img_path, ori_shape=gt.shape, task='semantic', texts=list(texts))
    if source is not None:
        meta['source'] = source
    s = DetDataSample(metainfo=meta)
    s.gt_sem_seg = PixelData(sem_seg=torch.as_tensor(gt, dtype=torch.long)[None])
    s.pred_sem_seg = PixelData(sem_seg=torch.as_tensor(pred, dtype=torch.long)[None])
    return s


# ---------------------------------------------------------------- tiny COCO instance world
COCO_CLASSES = ('square', 'circle')
COCO_IMAGES = {  # img_id -> list of (class index, rows, cols); 32 x 32 images
    11: [(0, slice(2, 12), slice(2, 12)), (1, slice(15, 30), slice(15, 30))],
    12: [(1, slice(5, 21), slice(8, 25))],
}
COCO_SIZE = 32


def write_coco_json(path: str, category_order: Sequence[int] = (0, 1)) -> None:
    """Write the tiny COCO json (RLE masks); categories listed in ``category_order``.

    Category ids are 3 (square) and 7 (circle): not contiguous, not starting at 1.
    """
    import json

    from pycocotools import mask as mask_util
    cat_ids = (3, 7)
    images, anns = [], []
    for img_id, objs in COCO_IMAGES.items():
        images.append(dict(id=img_id, width=COCO_SIZE, height=COCO_SIZE, file_name=f'{img_id}.png'))
        for cls, rows, cols in objs:
            m = box_mask(COCO_SIZE, COCO_SIZE, rows, cols).astype(np.uint8)
            rle = mask_util.encode(np.asfortranarray(m))
            rle['counts'] = rle['counts'].decode()
            anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=cat_ids[cls],
                             segmentation=rle, area=float(m.sum()),
                             bbox=[float(v) for v in mask_util.toBbox(rle)], iscrowd=0))
    cats = [dict(id=cat_ids[i], name=COCO_CLASSES[i]) for i in category_order]
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=cats), f)


def coco_samples(source: Optional[str] = None, texts: Sequence[str] = COCO_CLASSES,
                 swap_labels: bool = False) -> List[DetDataSample]:
    """Perfect predictions for the tiny COCO world (labels index ``texts``)."""
    samples = []
    for img_id, objs in COCO_IMAGES.items():
        meta = dict(img_id=img_id, img_path=f'{img_id}.png', ori_shape=(COCO_SIZE, COCO_SIZE),
                    task='instance', texts=list(texts))
        if source is not None:
            meta['source'] = source
        s = DetDataSample(metainfo=meta)
        masks, boxes, labels = [], [], []
        for cls, rows, cols in objs:
            masks.append(box_mask(COCO_SIZE, COCO_SIZE, rows, cols))
            boxes.append([cols.start, rows.start, cols.stop, rows.stop])
            name = COCO_CLASSES[1 - cls if swap_labels else cls]
            labels.append(list(texts).index(name))
        s.pred_instances = InstanceData(
            masks=torch.from_numpy(np.stack(masks)), bboxes=torch.tensor(boxes, dtype=torch.float),
            scores=torch.ones(len(objs)), labels=torch.tensor(labels),
            query_types=torch.ones(len(objs), dtype=torch.long))
        samples.append(s)
    return samples
