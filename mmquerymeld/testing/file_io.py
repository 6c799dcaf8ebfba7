"""Writing helpers shared by the synthetic world's format writers (images, JSON, COCO fields)."""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any, List

import cv2
import numpy as np

from mmquerymeld.datasets.utils import mask_to_bbox
from .world_classes import THING_CAT_IDS, THING_CLASSES


def imwrite(path: str, rgb: np.ndarray) -> None:
    """Write an RGB ``[H, W, 3]`` or single-channel ``[H, W]`` uint8 image (JPEG quality 95)."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.endswith('.jpg') else []
    if rgb.ndim == 3:
        rgb = rgb[..., ::-1]
    if not cv2.imwrite(path, np.ascontiguousarray(rgb), params):
        raise IOError(f'could not write {path}')


def dump_json(obj: Any, path: str) -> None:
    """Write ``obj`` as JSON to ``path``, creating its folder."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f)


def mask_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a mask as COCO polygons (parts with at least 3 points)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) >= 3:
            polys.append([float(v) + 0.5 for v in c.reshape(-1)])
    return polys


def mask_xywh(mask: np.ndarray) -> List[float]:
    """COCO ``[x, y, w, h]`` box of a mask ``[H, W]``."""
    x1, y1, x2, y2 = mask_to_bbox(mask).tolist()
    return [x1, y1, x2 - x1, y2 - y1]


def coco_categories() -> List[dict]:
    """COCO ``categories`` entries of the thing classes."""
    return [dict(id=i, name=n, supercategory='shape') for i, n in zip(THING_CAT_IDS, THING_CLASSES)]


def image_entry(img_id: int, file_name: str, size: int) -> dict:
    """COCO ``images`` entry of a square image of side ``size``."""
    return dict(id=img_id, file_name=file_name, height=size, width=size)


class IdCounter:
    """Monotonic id source (annotation ids unique across the whole world)."""

    def __init__(self, start: int) -> None:
        self.value = start

    def __call__(self) -> int:
        self.value += 1
        return self.value

