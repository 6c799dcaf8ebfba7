"""Small helpers shared by the loaders: panoptic id decoding, mask/box geometry, polygon hygiene.

Everything here works on numpy arrays and has no dependency on the model code.
"""
from __future__ import annotations

import os.path as osp
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np

from mmquerymeld.utils.text import clean_class_name  # noqa: F401  (re-exported)

#: Ignore value of 8-bit semantic label maps (mmseg / mmdet convention).
IGNORE_INDEX_8BIT = 255
#: Ignore value of 16-bit label maps (label spaces with more than 255 classes, e.g. PC-459).
IGNORE_INDEX_16BIT = 65535


def rgb2id(color: np.ndarray) -> np.ndarray:
    """Decode COCO panoptic PNG colours into segment ids (panopticapi's ``rgb2id`` formula).

    COCO panoptic format: ``id = R + 256 * G + 256 ** 2 * B``.

    Args:
        color: uint8 array ``[H, W, 3]`` in RGB order.

    Returns:
        int64 array ``[H, W]`` of segment ids (0 is void).
    """
    if color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f'rgb2id expects an [H, W, 3] RGB array, got shape {color.shape}')
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def id2rgb(id_map: np.ndarray) -> np.ndarray:
    """Encode segment ids as COCO panoptic colours (inverse of :func:`rgb2id`).

    Args:
        id_map: integer array ``[H, W]`` with ids in ``[0, 2**24)``.

    Returns:
        uint8 array ``[H, W, 3]`` in RGB order.
    """
    id_map = id_map.astype(np.int64)
    if id_map.min() < 0 or id_map.max() >= 256 ** 3:
        raise ValueError('panoptic segment ids must lie in [0, 2**24)')
    rgb = np.empty(id_map.shape + (3, ), dtype=np.uint8)
    rgb[..., 0] = id_map % 256
    rgb[..., 1] = (id_map // 256) % 256
    rgb[..., 2] = (id_map // (256 * 256)) % 256
    return rgb


def mask_to_bbox(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box of a binary mask, in pixel-edge coordinates (``x2 = last column + 1``).

    Args:
        mask: bool / uint8 array ``[H, W]``.

    Returns:
        float32 array ``[4]``; all zeros for an empty mask.
    """
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        return np.zeros(4, dtype=np.float32)
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=np.float32)


def masks_to_bboxes(masks: np.ndarray) -> np.ndarray:
    """Vectorised :func:`mask_to_bbox` over a stack of masks.

    Args:
        masks: array ``[N, H, W]``.

    Returns:
        float32 array ``[N, 4]`` xyxy (zeros for empty masks).
    """
    n = masks.shape[0]
    if n == 0:
        return np.zeros((0, 4), dtype=np.float32)
    rows = masks.any(axis=2)  # [N, H]
    cols = masks.any(axis=1)  # [N, W]
    h, w = masks.shape[1:]
    has = rows.any(axis=1)
    y1 = np.where(has, rows.argmax(axis=1), 0)
    y2 = np.where(has, h - rows[:, ::-1].argmax(axis=1), 0)
    x1 = np.where(has, cols.argmax(axis=1), 0)
    x2 = np.where(has, w - cols[:, ::-1].argmax(axis=1), 0)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)


def polygon_area(poly: Sequence[float]) -> float:
    """Shoelace area of a flat ``[x0, y0, x1, y1, ...]`` polygon."""
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def sanitize_segmentation(seg: Any) -> Optional[Union[List[List[float]], dict]]:
    """Drop the invalid parts of a COCO ``segmentation`` field.

    Polygons keep only parts with an even number (>= 6) of finite coordinates and a non-zero
    area (pycocotools reads a 4-number "polygon" as a box and crashes on odd lengths). RLE dicts
    must carry ``counts`` and a 2-element ``size``.

    Args:
        seg: polygon list, RLE dict (compressed or not), or anything else.

    Returns:
        The cleaned segmentation, or None when nothing valid is left.
    """
    if isinstance(seg, dict):
        size = seg.get('size')
        if 'counts' in seg and isinstance(size, (list, tuple)) and len(size) == 2:
            return seg
        return None
    if isinstance(seg, (list, tuple)):
        parts = []
        for part in seg:
            if not isinstance(part, (list, tuple)) or len(part) < 6 or len(part) % 2:
                continue
            arr = np.asarray(part, dtype=np.float64)
            if not np.isfinite(arr).all() or polygon_area(arr) <= 0:
                continue
            parts.append([float(v) for v in part])
        return parts or None
    return None


def segmentation_to_mask(seg: Union[list, dict], height: int, width: int) -> np.ndarray:
    """Rasterise a (sanitised) COCO segmentation with pycocotools.

    Args:
        seg: polygon list or RLE dict (compressed string/bytes counts or uncompressed list counts).
        height: image height.
        width: image width.

    Returns:
        uint8 array ``[H, W]`` in {0, 1}.
    """
    from pycocotools import mask as mask_utils
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg['counts'], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = dict(seg)
        if isinstance(rle['counts'], str):
            rle['counts'] = rle['counts'].encode('ascii')
    return mask_utils.decode(rle).astype(np.uint8)


def mask_to_rle(mask: np.ndarray) -> dict:
    """Encode a binary mask as a JSON-ready compressed COCO RLE (``counts`` as str)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(rle['size'][0]), int(rle['size'][1])],
            'counts': rle['counts'].decode('ascii')}


def require_file(path: str, what: str, owner: str = '') -> None:
    """Raise a FileNotFoundError naming ``path`` when it is not an existing file.

    Args:
        path: local path to check (remote URIs, containing '://', are not checked).
        what: what the file is (``'annotation file'``), used in the message.
        owner: who asked for it (dataset / source name), used in the message.
    """
    if '://' in str(path):
        return
    if not osp.isfile(path):
        prefix = f'{owner}: ' if owner else ''
        raise FileNotFoundError(f'{prefix}{what} not found: {path}')


def require_dir(path: str, what: str, owner: str = '') -> None:
    """Raise a FileNotFoundError naming ``path`` when it is not an existing directory."""
    if '://' in str(path):
        return
    if not osp.isdir(path):
        prefix = f'{owner}: ' if owner else ''
        raise FileNotFoundError(f'{prefix}{what} not found: {path}')


def split_thing_stuff(metainfo: dict) -> Tuple[Optional[List[str]], Optional[List[bool]]]:
    """Classes and thing flags of a dataset's metainfo, whatever convention it uses.

    Accepts ``thing_flags`` given directly, mmdet's panoptic ``thing_classes`` + ``stuff_classes``
    (classes are things first), or plain ``classes`` (flags unknown: None).

    Returns:
        ``(classes, thing_flags)``; either may be None.
    """
    classes = metainfo.get('classes')
    flags = metainfo.get('thing_flags')
    things, stuff = metainfo.get('thing_classes'), metainfo.get('stuff_classes')
    if classes is None and things is not None:
        classes = list(things) + list(stuff or [])
    if flags is None and things is not None and classes is not None:
        thing_set = set(things)
        flags = [c in thing_set for c in classes]
    return (list(classes) if classes is not None else None,
            list(flags) if flags is not None else None)
