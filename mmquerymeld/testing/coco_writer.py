"""COCO-family formats of the COCO-like scenes: instances, panoptic, LVIS v1 and RefCOCO/+/g."""
from __future__ import annotations

import os.path as osp
from typing import Dict, List, Set, Tuple

import numpy as np

from mmquerymeld.datasets.utils import id2rgb, mask_to_rle
from .file_io import (IdCounter, coco_categories, dump_json, image_entry, imwrite, mask_polygons,
                      mask_xywh)
from .referring_writer import write_referring
from .scenes import Scene
from .world_classes import (COLORS, LVIS_CLASSES, STUFF_CAT_IDS, STUFF_CLASSES, THING_CAT_IDS,
                            THING_CLASSES)

SPLIT_FOLDERS: Dict[str, str] = {'train': 'train2017', 'val': 'val2017'}


def _panoptic_categories() -> List[dict]:
    """COCO panoptic ``categories``: the things (``isthing=1``), then the stuff."""
    cats = [dict(id=i, name=n, isthing=1, color=list(COLORS['red']), supercategory='shape')
            for i, n in zip(THING_CAT_IDS, THING_CLASSES)]
    cats += [dict(id=i, name=n, isthing=0, color=[120, 120, 120], supercategory='stuff')
             for i, n in zip(STUFF_CAT_IDS, STUFF_CLASSES)]
    return cats


def _panoptic_segments(scene: Scene, rng: np.random.Generator) -> Tuple[np.ndarray, List[dict]]:
    """One segment per thing, then one per present stuff class, with random distinct ids.

    Returns:
        The id map ``[H, W]`` int64 (0 = void) and the ``segments_info`` list.
    """
    id_map = np.zeros(scene.stuff_map.shape, dtype=np.int64)
    segments = []
    used: Set[int] = set()

    def new_seg_id() -> int:
        while True:
            sid = int(rng.integers(1, 256 ** 3))
            if sid not in used:
                used.add(sid)
                return sid

    for t in scene.things:
        sid = new_seg_id()
        id_map[t.mask] = sid
        segments.append(dict(id=sid, category_id=THING_CAT_IDS[t.cls], iscrowd=0,
                             bbox=mask_xywh(t.mask), area=int(t.mask.sum())))
    for s, m in scene.stuff_masks().items():
        sid = new_seg_id()
        id_map[m] = sid
        segments.append(dict(id=sid, category_id=STUFF_CAT_IDS[s], iscrowd=0,
                             bbox=mask_xywh(m), area=int(m.sum())))
    return id_map, segments


def _lvis_images(images: List[dict], lvis_anns: List[dict], folder: str, size: int,
                 rng: np.random.Generator) -> List[dict]:
    """LVIS v1 ``images``: ``coco_url`` and the federated lists (three verified-absent classes)."""
    lvis_images = []
    for img in images:
        present = {a['category_id'] for a in lvis_anns if a['image_id'] == img['id']}
        absent = [c for c in range(1, len(LVIS_CLASSES) + 1) if c not in present]
        neg = sorted(rng.choice(absent, size=min(3, len(absent)), replace=False).tolist())
        lvis_images.append(dict(
            id=img['id'], height=size, width=size,
            coco_url=f'http://images.cocodataset.org/{folder}/{img["file_name"]}',
            neg_category_ids=[int(c) for c in neg],
            not_exhaustive_category_ids=[]))
    return lvis_images


def _lvis_categories(counts: np.ndarray) -> List[dict]:
    """LVIS ``categories`` with frequency groups from the instance counts of both splits ``[C]``."""
    freq = ['r' if c < 3 else 'c' if c < 6 else 'f' for c in counts]
    return [dict(id=i + 1, name=n, synonyms=[n], frequency=freq[i],
                 image_count=int(counts[i]), instance_count=int(counts[i]))
            for i, n in enumerate(LVIS_CLASSES)]


def write_coco_family(root: str, scenes: Dict[str, List[Scene]], ids: Dict[str, List[int]],
                      size: int, rng: np.random.Generator) -> None:
    """COCO instances + panoptic + LVIS + RefCOCO/+/g from the shared COCO-like scenes.

    Args:
        root: world root.
        scenes: ``'train'`` / ``'val'`` -> scenes.
        ids: ``'train'`` / ``'val'`` -> COCO image ids, one per scene.
        size: image side in pixels.
        rng: source of the panoptic segment ids and the LVIS negative classes.
    """
    ann_id = IdCounter(0)
    lvis_cats_count = np.zeros(len(LVIS_CLASSES), dtype=np.int64)
    lvis_jsons: Dict[str, dict] = {}
    per_split_anns: Dict[str, List[List[dict]]] = {}
    refcoco_images, refcoco_anns = [], []
    for split in ('train', 'val'):
        folder = SPLIT_FOLDERS[split]
        images, anns, pan_anns, lvis_anns = [], [], [], []
        split_anns: List[List[dict]] = []
        for scene, img_id in zip(scenes[split], ids[split]):
            fname = f'{img_id:012d}.jpg'
            imwrite(osp.join(root, 'coco', folder, fname), scene.image)
            imwrite(osp.join(root, 'coco', 'train2014', f'COCO_train2014_{img_id:012d}.jpg'),
                    scene.image)
            images.append(image_entry(img_id, fname, size))
            refcoco_images.append(
                image_entry(img_id, f'COCO_train2014_{img_id:012d}.jpg', size))
            img_anns = []
            for t_idx, t in enumerate(scene.things):
                aid = ann_id()
                seg = mask_to_rle(t.mask) if aid % 4 == 0 else mask_polygons(t.mask)
                ann = dict(id=aid, image_id=img_id, category_id=THING_CAT_IDS[t.cls],
                           segmentation=seg, area=int(t.mask.sum()), bbox=mask_xywh(t.mask),
                           iscrowd=0)
                anns.append(ann)
                img_anns.append(dict(ann, _thing=t_idx))
                refcoco_anns.append(dict(ann, segmentation=mask_polygons(t.mask)))
                lvis_cat = t.cls * len(COLORS) + list(COLORS).index(t.color)
                lvis_cats_count[lvis_cat] += 1
                lvis_anns.append(dict(id=aid, image_id=img_id, category_id=lvis_cat + 1,
                                      segmentation=mask_polygons(t.mask), area=int(t.mask.sum()),
                                      bbox=mask_xywh(t.mask)))
            split_anns.append(img_anns)
            id_map, segments = _panoptic_segments(scene, rng)
            png = f'{img_id:012d}.png'
            imwrite(osp.join(root, 'coco', 'annotations', f'panoptic_{folder}', png),
                    id2rgb(id_map))
            pan_anns.append(dict(image_id=img_id, file_name=png, segments_info=segments))
        per_split_anns[split] = split_anns
        dump_json(dict(images=images, annotations=anns, categories=coco_categories()),
                  osp.join(root, 'coco', 'annotations', f'instances_{folder}.json'))
        dump_json(dict(images=images, annotations=pan_anns, categories=_panoptic_categories()),
                  osp.join(root, 'coco', 'annotations', f'panoptic_{folder}.json'))
        lvis_jsons[split] = dict(images=_lvis_images(images, lvis_anns, folder, size, rng),
                                 annotations=lvis_anns, categories=[])
    # LVIS categories need the counts of both splits
    lvis_categories = _lvis_categories(lvis_cats_count)
    for split in ('train', 'val'):
        lvis_json = lvis_jsons[split]
        lvis_json['categories'] = lvis_categories
        dump_json(lvis_json, osp.join(root, 'lvis', f'lvis_v1_{split}.json'))
    write_referring(root, scenes, per_split_anns,
                    dict(images=refcoco_images, annotations=refcoco_anns,
                         categories=coco_categories()))
