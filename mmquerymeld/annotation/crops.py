"""Box crops with a context margin, the input of the region captioner and of the CLIP filter.

Paper appendix A.1.3: the captioner describes an object better when it sees some of its
surroundings, so the box is enlarged by a margin (a fraction of its own width / height on each
side) before cropping, then clipped to the image.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np


def context_box(bbox: Sequence[float], width: int, height: int,
                margin: float = 0.2) -> Tuple[int, int, int, int]:
    """Integer pixel window of a COCO box enlarged by ``margin`` on each side, inside the image.

    Args:
        bbox: COCO ``[x, y, w, h]`` in pixels (may lie partly outside the image).
        width: Image width W.
        height: Image height H.
        margin: Added on each side, as a fraction of the box's own width (left / right) and
            height (top / bottom); 0 crops the box itself.

    Returns:
        ``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H`` (at least one
        pixel, even for a sub-pixel box).

    Raises:
        ValueError: ``margin`` is negative, or the box does not overlap the image.
    """
    if margin < 0:
        raise ValueError(f'margin must be >= 0, got {margin}')
    x, y, w, h = (float(v) for v in bbox)
    if min(x + w, width) <= max(x, 0.0) or min(y + h, height) <= max(y, 0.0):
        raise ValueError(f'box {list(bbox)} does not overlap the {width}x{height} image')
    x0 = int(np.floor(max(x - margin * w, 0.0)))
    y0 = int(np.floor(max(y - margin * h, 0.0)))
    x1 = int(np.ceil(min(x + w + margin * w, float(width))))
    y1 = int(np.ceil(min(y + h + margin * h, float(height))))
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def crop_boxes(rgb: np.ndarray, bboxes: Sequence[Sequence[float]],
               margin: float = 0.2) -> Tuple[List[np.ndarray], List[Tuple[int, int, int, int]]]:
    """Crops of an image around each box (with context), as views of the image.

    Args:
        rgb: uint8 image ``[H, W, 3]``.
        bboxes: N COCO ``[x, y, w, h]`` boxes that overlap the image.
        margin: See :func:`context_box`.

    Returns:
        ``(crops, windows)``: N arrays ``[h_i, w_i, 3]`` and their ``(x0, y0, x1, y1)`` windows.
    """
    height, width = rgb.shape[:2]
    windows = [context_box(b, width, height, margin) for b in bboxes]
    crops = [rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    return crops, windows
