"""``box2mask``: synthetic masks for box-only detection data (paper section 3.4, appendix A.1.3:
Objects365-syn-m from SAM / HQ-SAM prompted with the ground-truth boxes).

Input: a COCO-format box JSON and its images. Output: the synthetic-mask JSON that
:class:`mmquerymeld.datasets.BoxCaptionDataset` reads as ``syn_mask_file``, one record per kept
box: ``{"id": box id, "image_id", "category_id", "bbox": source [x, y, w, h], "segmentation":
compressed RLE, "area": mask pixels, "score": the predictor's predicted IoU}``. A mask is kept
only inside its box enlarged by ``box_margin`` (a fraction of the box side, each way); masks
left empty or under ``min_area`` pixels are dropped and counted (``empty_mask``, ``tiny_mask``).
"""
from __future__ import annotations

import math
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmquerymeld.datasets.utils import mask_to_rle
from .runner import ImageJob, load_box_json, make_jobs, run_images

TOOL = 'box2mask'


def clip_xyxy(bbox, width: int, height: int) -> List[float]:
    """COCO ``[x, y, w, h]`` -> ``[x1, y1, x2, y2]`` clipped to the image."""
    x, y, w, h = (float(v) for v in bbox)
    return [min(max(x, 0.0), width), min(max(y, 0.0), height),
            min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)]


def margin_window(bbox, margin: float, width: int, height: int) -> Tuple[int, int, int, int]:
    """Integer pixel window ``(x1, y1, x2, y2)`` (exclusive end) of the box grown by
    ``margin * side`` on each side, inside the image."""
    x, y, w, h = (float(v) for v in bbox)
    mx, my = margin * w, margin * h
    x1 = max(int(math.floor(x - mx)), 0)
    y1 = max(int(math.floor(y - my)), 0)
    x2 = min(int(math.ceil(x + w + mx)), width)
    y2 = min(int(math.ceil(y + h + my)), height)
    return x1, y1, x2, y2


def masks_to_records(job: ImageJob, masks: np.ndarray, scores: np.ndarray, min_area: int,
                     box_margin: float) -> Tuple[List[dict], Dict[str, int]]:
    """Cut each mask to its box margin, drop empty / tiny ones, encode the rest.

    Args:
        job: The image and its boxes (``job.anns``, aligned with ``masks``).
        masks: Bool ``[N, H, W]``, one per box.
        scores: Float ``[N]``.
        min_area: Fewest mask pixels kept (after the cut).
        box_margin: Margin around the box, as a fraction of its width / height.

    Returns:
        ``(records, dropped counts)``.
    """
    h, w = masks.shape[1:]
    records, dropped = [], {}
    for ann, mask, score in zip(job.anns, masks, scores):
        x1, y1, x2, y2 = margin_window(ann['bbox'], box_margin, w, h)
        cut = np.zeros((h, w), np.uint8)
        cut[y1:y2, x1:x2] = mask[y1:y2, x1:x2]
        area = int(cut.sum())
        reason = 'empty_mask' if area == 0 else 'tiny_mask' if area < min_area else None
        if reason:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        records.append(dict(id=ann['id'], image_id=job.image_id,
                            category_id=ann.get('category_id'),
                            bbox=[float(v) for v in ann['bbox']], segmentation=mask_to_rle(cut),
                            area=area, score=round(float(score), 5)))
    return records, dropped


class Box2MaskProcess:
    """``process`` for :func:`run_images`: every box of the image in one prompt batch."""

    def __init__(self, predictor, min_area: int, box_margin: float) -> None:
        self.predictor = predictor
        self.min_area = int(min_area)
        self.box_margin = float(box_margin)

    def __call__(self, job: ImageJob, rgb: np.ndarray) -> Tuple[List[dict], Dict[str, int]]:
        h, w = rgb.shape[:2]
        boxes = np.array([clip_xyxy(a['bbox'], w, h) for a in job.anns], np.float32)
        masks, scores = self.predictor.predict(rgb, boxes.reshape(-1, 4))
        if masks.shape != (len(job.anns), h, w):
            raise RuntimeError(f'{type(self.predictor).__name__} returned masks of shape '
                               f'{masks.shape} for {len(job.anns)} boxes on a {h}x{w} image')
        return masks_to_records(job, masks, scores, self.min_area, self.box_margin)


def predictor_settings(cfg: dict) -> dict:
    """The predictor config as recorded in the output (no device, no memory knobs)."""
    return {k: v for k, v in sorted(cfg.items()) if k not in ('device', 'max_boxes')}


def box2mask(box_json: str, image_root: str, out_file: str, predictor: dict,
             min_area: int = 16, box_margin: float = 0.05, shard: Tuple[int, int] = (0, 1),
             progress: bool = True, predictor_obj: Optional[object] = None) -> dict:
    """Synthetic masks for every box of ``box_json``; writes ``out_file`` (or its shard).

    Args:
        box_json: COCO-format detection JSON.
        image_root: Folder of its ``file_name`` entries.
        out_file: Output synthetic-mask JSON.
        predictor: Config of a :data:`BOX_PREDICTORS` entry (``dict(type='sam', checkpoint=...,
            model_type='vit_b', device='cpu')``).
        min_area: Fewest mask pixels kept.
        box_margin: Mask kept inside the box grown by this fraction of its sides.
        shard: ``(index, count)``: this process's share of the images.
        progress: Show a progress bar.
        predictor_obj: An already built predictor (skips building ``predictor``).

    Returns:
        The run summary (see :func:`run_images`).
    """
    from .box_predictors import BOX_PREDICTORS
    if min_area < 1 or box_margin < 0:
        raise ValueError(f'min_area must be >= 1 and box_margin >= 0, got {min_area}, '
                         f'{box_margin}')
    images, by_image, _ = load_box_json(box_json)
    jobs, _ = make_jobs(images, by_image, image_root)
    model = predictor_obj if predictor_obj is not None else BOX_PREDICTORS.build(dict(predictor))
    settings = dict(box_json=osp.abspath(box_json), image_root=osp.abspath(image_root),
                    predictor=predictor_settings(predictor), min_area=int(min_area),
                    box_margin=float(box_margin))
    return run_images(TOOL, jobs, out_file, Box2MaskProcess(model, min_area, box_margin),
                      settings, shard=shard, progress=progress)
