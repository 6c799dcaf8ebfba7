"""Raw COCO-style annotations the loaders would drop silently, as dataset-doctor issues.

Part of :mod:`mmquerymeld.datasets.doctor` (``tools/misc/check_dataset.py``): the loaders drop an
annotation whose label is outside the vocabulary, whose box lies outside the image or has no area,
or whose polygon / RLE rasterises to nothing, and only count it; here each one is named.
"""
from __future__ import annotations

import json
import os.path as osp
from typing import Any, Dict

import numpy as np

from .utils import sanitize_segmentation, segmentation_to_mask

#: Tolerance (pixels) of a box edge beyond the image border before it counts as outside.
BOX_TOLERANCE = 1.0


def _issue(*args):
    from .doctor import Issue  # the doctor's record type (imported late: no import cycle)
    return Issue(*args)


def audit_coco_json(name: str, dataset: Any, index_of: Dict[str, int]) -> list:
    """Annotations of a COCO-style JSON that the loaders would drop silently.

    Args:
        name: Source name.
        dataset: The built source dataset (``ann_file``, ``data_prefix``).
        index_of: ``{img_path: sample index}`` of the loaded samples.
    """
    ann_file = getattr(dataset, 'ann_file', '') or ''
    if not ann_file.endswith('.json') or not osp.isfile(ann_file):
        return []
    with open(ann_file) as f:
        data = json.load(f)
    if not isinstance(data, dict) or 'annotations' not in data or 'images' not in data:
        return []
    prefix = dataset.data_prefix or {}
    img_dir = prefix.get('img', prefix.get('img_path', '')) or ''
    cats = {c['id'] for c in data.get('categories', [])}
    images = {i['id']: i for i in data['images']}
    issues: list = []
    for ann in data['annotations']:
        img = images.get(ann.get('image_id'))
        if img is None:
            continue
        path = osp.join(img_dir, img['file_name'])
        if 'segments_info' in ann:  # panoptic: one entry per image, a PNG of segment ids
            issues += _audit_panoptic(name, dataset, ann, cats, path, index_of.get(path))
            continue
        issues += _audit_instance(name, ann, img, cats, path, index_of.get(path))
    return issues


def _audit_panoptic(name, dataset, ann, cats, path, index) -> list:
    out = []  # the PNG itself is checked per sample (its seg_map_path)
    for seg in ann['segments_info']:
        if seg.get('category_id') not in cats:
            out.append(_issue(name, 'label_outside_vocabulary', path,
                             f'segment {seg.get("id")}: category_id {seg.get("category_id")} '
                             f'not in "categories"', index))
    return out


def _audit_instance(name, ann, img, cats, path, index) -> list:
    ann_id = ann.get('id')
    if ann.get('category_id') not in cats:
        return [_issue(name, 'label_outside_vocabulary', path,
                      f'annotation {ann_id}: category_id {ann.get("category_id")} not in '
                      '"categories"', index)]
    box = ann.get('bbox')
    if box is None or len(box) != 4 or not np.isfinite(np.asarray(box, float)).all():
        return [_issue(name, 'degenerate_box', path, f'annotation {ann_id}: bbox {box}', index)]
    x, y, w, h = (float(v) for v in box)
    width, height = img.get('width'), img.get('height')
    if w < 1 or h < 1 or ann.get('area', w * h) <= 0:
        return [_issue(name, 'degenerate_box', path,
                      f'annotation {ann_id}: bbox {box} has zero area', index)]
    if width and height and (x < -BOX_TOLERANCE or y < -BOX_TOLERANCE or
                             x + w > width + BOX_TOLERANCE or y + h > height + BOX_TOLERANCE):
        return [_issue(name, 'box_outside_image', path,
                      f'annotation {ann_id}: bbox {box} outside the {width}x{height} image',
                      index)]
    seg = ann.get('segmentation')
    if seg:
        clean = sanitize_segmentation(seg)
        if clean is None or (width and height and
                             not segmentation_to_mask(clean, height, width).any()):
            return [_issue(name, 'degenerate_mask', path,
                          f'annotation {ann_id}: segmentation rasterises to nothing', index)]
    return []
