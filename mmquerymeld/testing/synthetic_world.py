"""A small synthetic world, written in the file formats of the datasets QueryMeldNet trains on.

Coloured shapes (circle, square, ...) at varied positions and sizes are the *things*; textured
bands (sky, grass, ...) are the *stuff*. From the same kind of scenes the generator writes, for a
train and a val split each, every format the loaders read (paper section 3.3 / 3.4 data):

=================  ==============================================================================
``coco/``          COCO 2017 layout: ``train2017/ val2017/`` JPEGs, ``annotations/instances_*.json``
                   (polygons, and compressed RLE for every 4th object), ``panoptic_*.json`` +
                   ``panoptic_*2017/`` RGB-encoded id PNGs; ``train2014/COCO_train2014_*.jpg`` for
                   the referring sets (RefCOCO images live in COCO train2014).
``lvis/``          ``lvis_v1_{train,val}.json``: LVIS v1 style (``coco_url``, ``neg_category_ids``,
                   ``not_exhaustive_category_ids``, ``frequency``), 30 colour-shape categories.
``refcoco*/``      ``refs(unc).p`` (refcoco, refcoco+), ``refs(umd).p`` + ``refs(google).p``
                   (refcocog) and ``instances.json``. Referring val/test refs use the val images
                   only, so the world has no leakage by construction.
``ade/``           ``ADEChallengeData2016/{images,annotations}/{training,validation}``, uint8 label
                   maps with 0 = other (``reduce_zero_label``).
``pc459/``         the same scenes with 16-bit label maps over a 300-class space (ids above 255,
                   65535 = ignore), as PC-459 needs.
``salient/``       one salient shape per image in the DUTS, DIS5K and HRSOD folder layouts.
``detection/``     Objects365-style box-only JSON + synthetic-mask JSON (masks for ~80% of the
                   boxes) + synthetic-caption JSON (five captions per box).
=================  ==============================================================================

Everything is deterministic given ``seed``. ``world_info.json`` at the root lists the classes
and paths. The CLI is ``tools/dataset_converters/make_synthetic_world.py``.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import pickle
import time
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import cv2
import numpy as np

from mmquerymeld.datasets.folders import SALIENT_LAYOUTS, salient_dirs
from mmquerymeld.datasets.utils import IGNORE_INDEX_16BIT, id2rgb, mask_to_bbox, mask_to_rle

THING_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star', 'cross')
#: COCO-like non-contiguous category ids of the things (and of the stuff below).
THING_CAT_IDS: Tuple[int, ...] = (1, 2, 4, 7, 9)
STUFF_CLASSES: Tuple[str, ...] = ('sky', 'grass', 'water', 'sand', 'wall')
STUFF_CAT_IDS: Tuple[int, ...] = (101, 102, 110, 118, 125)
#: ADE-style semantic classes (label value = index + 1; 0 = other).
SEMANTIC_CLASSES: Tuple[str, ...] = THING_CLASSES + STUFF_CLASSES
COLORS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 35, 35),
    'yellow': (245, 215, 30),
    'purple': (140, 50, 200),
    'orange': (250, 135, 20),
    'white': (245, 245, 245),
    'black': (25, 25, 25),
}
#: LVIS-style vocabulary: one category per colour-shape pair (30 > the usual text cap in tests).
LVIS_CLASSES: Tuple[str, ...] = tuple(f'{c}_{s}' for s in THING_CLASSES for c in COLORS)
#: Size of the >255-class label space of the 16-bit variant, and where the world's classes sit.
PC_NUM_CLASSES = 300
PC_CLASS_IDS: Tuple[int, ...] = (12, 140, 255, 256, 270, 283, 290, 296, 298, 299)
FOREGROUND_PROMPT = 'foreground'


def pc459_classes() -> List[str]:
    """The 300 class names of the 16-bit variant (world classes at :data:`PC_CLASS_IDS`)."""
    names = [f'pc_class_{i:03d}' for i in range(PC_NUM_CLASSES)]
    for cid, name in zip(PC_CLASS_IDS, SEMANTIC_CLASSES):
        names[cid] = name
    return names


@dataclass
class Thing:
    """One visible shape: class index into THING_CLASSES, colour name, visible mask [H, W] bool."""
    cls: int
    color: str
    mask: np.ndarray


@dataclass
class Scene:
    """A rendered scene: RGB image [H, W, 3] uint8, stuff index map [H, W], things in draw order."""
    image: np.ndarray
    stuff_map: np.ndarray
    things: List[Thing] = field(default_factory=list)

    def semantic_map(self) -> np.ndarray:
        """Class index map over SEMANTIC_CLASSES, ``[H, W]`` int64."""
        sem = self.stuff_map.astype(np.int64) + len(THING_CLASSES)
        for t in self.things:
            sem[t.mask] = t.cls
        return sem

    def stuff_masks(self) -> Dict[int, np.ndarray]:
        """Visible stuff region per stuff class index (things removed), empty ones dropped."""
        covered = np.zeros(self.stuff_map.shape, dtype=bool)
        for t in self.things:
            covered |= t.mask
        out = {}
        for s in np.unique(self.stuff_map):
            m = (self.stuff_map == s) & ~covered
            if m.any():
                out[int(s)] = m
        return out


# ----------------------------------------------------------------------------------------- render
def _texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A textured RGB patch ``[h, w, 3]`` float32 for one stuff class."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
    if kind == 'sky':
        t = (yy / max(h - 1, 1))[..., None]
        img = (1 - t) * np.array([110, 170, 235]) + t * np.array([200, 225, 250]) + 4 * noise
    elif kind == 'grass':
        streak = np.sin(xx * rng.uniform(1.5, 2.5) + rng.uniform(0, 6))[..., None]
        img = np.array([55, 135, 45]) + 18 * streak + 14 * noise
    elif kind == 'water':
        wave = np.sin(yy * rng.uniform(0.6, 0.9) + 0.3 * np.sin(xx * 0.2))[..., None]
        img = np.array([35, 85, 160]) + 25 * wave + 6 * noise
    elif kind == 'sand':
        img = np.array([210, 185, 130]) + 22 * noise
    elif kind == 'wall':
        brick_h, brick_w = 8, 16
        row = (yy // brick_h).astype(int)
        shift = (row % 2) * (brick_w // 2)
        mortar = ((yy % brick_h) < 1.5) | (((xx + shift) % brick_w) < 1.5)
        img = np.where(mortar[..., None], np.array([170, 170, 165]), np.array([150, 65, 55]))
        img = img + 6 * noise
    else:
        raise ValueError(f'unknown stuff texture {kind!r}')
    return np.clip(img, 0, 255).astype(np.float32)


def _shape_mask(cls_name: str, cx: float, cy: float, size: float, angle: float, h: int,
                w: int) -> np.ndarray:
    """Rasterise one shape centred at (cx, cy) with diameter ``size``; bool ``[h, w]``."""
    canvas = np.zeros((h, w), dtype=np.uint8)
    r = size / 2.0
    if cls_name == 'circle':
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), max(int(round(r)), 2), 1, -1)
        return canvas.astype(bool)
    if cls_name == 'square':
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.85
    elif cls_name == 'triangle':
        pts = np.array([[0, -r], [r * 0.95, r * 0.75], [-r * 0.95, r * 0.75]])
    elif cls_name == 'star':
        k = np.arange(10)
        rad = np.where(k % 2 == 0, r, r * 0.45)
        ang = k * np.pi / 5 - np.pi / 2
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    elif cls_name == 'cross':
        a, b = r, r * 0.33
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                        [-b, b], [-a, b], [-a, -b], [-b, -b]])
    else:
        raise ValueError(f'unknown shape {cls_name!r}')
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def _stuff_layout(rng: np.random.Generator, size: int, max_bands: int = 3) -> np.ndarray:
    """Stuff index map ``[size, size]``: 2-3 wavy bands of distinct stuff classes."""
    k = int(rng.integers(2, max_bands + 1))
    classes = rng.choice(len(STUFF_CLASSES), size=k, replace=False)
    cuts = np.sort(rng.uniform(0.2, 0.8, size=k - 1)) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    vertical = rng.random() < 0.25
    along, across = (xx, yy) if vertical else (yy, xx)
    amp, freq, phase = rng.uniform(0, 6), rng.uniform(0.03, 0.12), rng.uniform(0, 6.3)
    coord = along + amp * np.sin(across * freq + phase)
    band = np.searchsorted(cuts, coord.ravel()).reshape(size, size)
    return classes[band]


def render_scene(rng: np.random.Generator, size: int, num_things: int,
                 salient: bool = False) -> Scene:
    """Render one scene.

    Args:
        rng: random generator (the only source of randomness).
        size: image side in pixels.
        num_things: shapes to place (fewer when no free place is found).
        salient: one large central shape on a background (foreground datasets).

    Returns:
        The scene; every thing keeps at least 40 visible pixels.
    """
    stuff_map = _stuff_layout(rng, size, max_bands=2 if salient else 3)
    image = np.zeros((size, size, 3), dtype=np.float32)
    for s in np.unique(stuff_map):
        tex = _texture(STUFF_CLASSES[s], size, size, rng)
        image[stuff_map == s] = tex[stuff_map == s]
    things: List[Thing] = []
    occupied = np.zeros((size, size), dtype=bool)
    for _ in range(num_things):
        for _attempt in range(12):
            cls = int(rng.integers(len(THING_CLASSES)))
            if salient:
                diam = rng.uniform(0.4, 0.6) * size
                cx, cy = (size / 2 + rng.uniform(-0.12, 0.12) * size for _ in range(2))
            else:
                diam = rng.uniform(0.16, 0.38) * size
                cx, cy = (rng.uniform(diam / 2, size - diam / 2) for _ in range(2))
            mask = _shape_mask(THING_CLASSES[cls], cx, cy, diam, rng.uniform(0, np.pi / 4),
                               size, size)
            area = mask.sum()
            if area < 40 or (mask & occupied).sum() > 0.25 * area:
                continue
            color = str(rng.choice(list(COLORS)))
            for t in things:  # the new shape occludes the earlier ones
                t.mask &= ~mask
            things.append(Thing(cls, color, mask))
            occupied |= mask
            shade = np.array(COLORS[color], dtype=np.float32) + rng.normal(0, 5, (3, ))
            image[mask] = np.clip(shade, 0, 255)
            break
    things = [t for t in things if t.mask.sum() >= 40]
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    return Scene(image=image, stuff_map=stuff_map, things=things)


# ------------------------------------------------------------------------------------ language
def _where(mask: np.ndarray) -> Tuple[str, str, str]:
    """(horizontal, vertical, size) words of a mask: left/middle/right, top/center/bottom."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() / w, ys.mean() / h
    hpos = 'left' if cx < 1 / 3 else 'right' if cx > 2 / 3 else 'middle'
    vpos = 'top' if cy < 1 / 3 else 'bottom' if cy > 2 / 3 else 'center'
    size = 'large' if mask.sum() > 0.06 * h * w else 'small'
    return hpos, vpos, size


def referring_sentences(scene: Scene, idx: int, style: str) -> List[str]:
    """Referring expressions for thing ``idx`` ("the red circle on the left").

    Args:
        scene: the scene.
        idx: index into ``scene.things``.
        style: ``'refcoco'`` (short, with location words), ``'refcoco+'`` (no location words)
            or ``'refcocog'`` (longer sentences).

    Returns:
        Two or three sentences.
    """
    t = scene.things[idx]
    shape = THING_CLASSES[t.cls]
    hpos, vpos, size = _where(t.mask)
    where = 'in the middle' if hpos == 'middle' else f'on the {hpos}'
    if style == 'refcoco':
        return [f'the {t.color} {shape} {where}', f'{t.color} {shape}',
                f'{vpos} {hpos} {shape}']
    if style == 'refcoco+':
        return [f'the {t.color} {shape}', f'{size} {t.color} {shape}', f'{t.color} one']
    if style == 'refcocog':
        return [f'a {size} {t.color} {shape} at the {vpos} {hpos} of the picture',
                f'the {shape} that is painted {t.color}']
    raise ValueError(f'unknown referring style {style!r}')


def unique_sentences(scene: Scene, style: str) -> List[List[str]]:
    """:func:`referring_sentences` for every thing, minus those shared by two things.

    A thing whose every sentence is ambiguous gets one built from all its attributes.
    """
    per_thing = [referring_sentences(scene, i, style) for i in range(len(scene.things))]
    counts: Dict[str, int] = {}
    for sents in per_thing:
        for sent in set(sents):
            counts[sent] = counts.get(sent, 0) + 1
    out = []
    for i, sents in enumerate(per_thing):
        keep = [x for x in sents if counts[x] == 1]
        if not keep:
            t = scene.things[i]
            hpos, vpos, size = _where(t.mask)
            keep = [f'the {size} {t.color} {THING_CLASSES[t.cls]} at the {vpos} {hpos}']
        out.append(keep)
    return out


def object_captions(scene: Scene, idx: int) -> List[str]:
    """Five synthetic object captions (paper section 3.4, "synthetic segmentation caption")."""
    t = scene.things[idx]
    shape = THING_CLASSES[t.cls]
    hpos, vpos, size = _where(t.mask)
    ys, xs = np.nonzero(t.mask)
    under = STUFF_CLASSES[int(np.bincount(scene.stuff_map[ys, xs]).argmax())]
    return [f'a {t.color} {shape}', f'a {size} {t.color} {shape} on the {under}',
            f'{t.color} {shape} at the {vpos} {hpos}', f'a {shape} painted {t.color}',
            f'the {size} {shape} over the {under}']


# ----------------------------------------------------------------------------------------- writers
def _imwrite(path: str, rgb: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.endswith('.jpg') else []
    if rgb.ndim == 3:
        rgb = rgb[..., ::-1]
    if not cv2.imwrite(path, np.ascontiguousarray(rgb), params):
        raise IOError(f'could not write {path}')


def _dump_json(obj, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f)


def _polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a mask as COCO polygons (parts with at least 3 points)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        if len(c) >= 3:
            polys.append([float(v) + 0.5 for v in c.reshape(-1)])
    return polys


def _xywh(mask: np.ndarray) -> List[float]:
    x1, y1, x2, y2 = mask_to_bbox(mask).tolist()
    return [x1, y1, x2 - x1, y2 - y1]


def _coco_categories() -> List[dict]:
    return [dict(id=i, name=n, supercategory='shape') for i, n in zip(THING_CAT_IDS, THING_CLASSES)]


def _image_entry(img_id: int, file_name: str, size: int) -> dict:
    return dict(id=img_id, file_name=file_name, height=size, width=size)


class _Counter:
    """Monotonic id source (annotation ids unique across the whole world)."""

    def __init__(self, start: int) -> None:
        self.value = start

    def __call__(self) -> int:
        self.value += 1
        return self.value


def _write_coco_family(root: str, scenes: Dict[str, List[Scene]], ids: Dict[str, List[int]],
                       size: int, rng: np.random.Generator) -> dict:
    """COCO instances + panoptic + LVIS + RefCOCO/+/g from the shared COCO-like scenes."""
    ann_id = _Counter(0)
    info: dict = {}
    split_year = {'train': 'train2017', 'val': 'val2017'}
    pan_cats = [dict(id=i, name=n, isthing=1, color=list(COLORS['red']), supercategory='shape')
                for i, n in zip(THING_CAT_IDS, THING_CLASSES)]
    pan_cats += [dict(id=i, name=n, isthing=0, color=[120, 120, 120], supercategory='stuff')
                 for i, n in zip(STUFF_CAT_IDS, STUFF_CLASSES)]
    lvis_cats_count = np.zeros(len(LVIS_CLASSES), dtype=np.int64)
    per_split_anns: Dict[str, List[List[dict]]] = {}
    refcoco_images, refcoco_anns = [], []
    for split in ('train', 'val'):
        folder = split_year[split]
        images, anns, pan_anns, lvis_anns = [], [], [], []
        split_anns: List[List[dict]] = []
        for k, (scene, img_id) in enumerate(zip(scenes[split], ids[split])):
            fname = f'{img_id:012d}.jpg'
            _imwrite(osp.join(root, 'coco', folder, fname), scene.image)
            _imwrite(osp.join(root, 'coco', 'train2014', f'COCO_train2014_{img_id:012d}.jpg'),
                     scene.image)
            images.append(_image_entry(img_id, fname, size))
            refcoco_images.append(
                _image_entry(img_id, f'COCO_train2014_{img_id:012d}.jpg', size))
            img_anns = []
            for t_idx, t in enumerate(scene.things):
                aid = ann_id()
                seg = mask_to_rle(t.mask) if aid % 4 == 0 else _polygons(t.mask)
                ann = dict(id=aid, image_id=img_id, category_id=THING_CAT_IDS[t.cls],
                           segmentation=seg, area=int(t.mask.sum()), bbox=_xywh(t.mask),
                           iscrowd=0)
                anns.append(ann)
                img_anns.append(dict(ann, _thing=t_idx))
                refcoco_anns.append(dict(ann, segmentation=_polygons(t.mask)))
                lvis_cat = t.cls * len(COLORS) + list(COLORS).index(t.color)
                lvis_cats_count[lvis_cat] += 1
                lvis_anns.append(dict(id=aid, image_id=img_id, category_id=lvis_cat + 1,
                                      segmentation=_polygons(t.mask), area=int(t.mask.sum()),
                                      bbox=_xywh(t.mask)))
            split_anns.append(img_anns)
            # panoptic: one segment per thing, one per present stuff class
            id_map = np.zeros((size, size), dtype=np.int64)
            segments = []
            used = set()

            def new_seg_id() -> int:
                while True:
                    sid = int(rng.integers(1, 256 ** 3))
                    if sid not in used:
                        used.add(sid)
                        return sid

            for t_idx, t in enumerate(scene.things):
                sid = new_seg_id()
                id_map[t.mask] = sid
                segments.append(dict(id=sid, category_id=THING_CAT_IDS[t.cls], iscrowd=0,
                                     bbox=_xywh(t.mask), area=int(t.mask.sum())))
            for s, m in scene.stuff_masks().items():
                sid = new_seg_id()
                id_map[m] = sid
                segments.append(dict(id=sid, category_id=STUFF_CAT_IDS[s], iscrowd=0,
                                     bbox=_xywh(m), area=int(m.sum())))
            png = f'{img_id:012d}.png'
            _imwrite(osp.join(root, 'coco', 'annotations', f'panoptic_{folder}', png),
                     id2rgb(id_map))
            pan_anns.append(dict(image_id=img_id, file_name=png, segments_info=segments))
        per_split_anns[split] = split_anns
        _dump_json(dict(images=images, annotations=anns, categories=_coco_categories()),
                   osp.join(root, 'coco', 'annotations', f'instances_{folder}.json'))
        _dump_json(dict(images=images, annotations=pan_anns, categories=pan_cats),
                   osp.join(root, 'coco', 'annotations', f'panoptic_{folder}.json'))
        # LVIS v1 style: images carry coco_url and the federated-annotation lists
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
        lvis_json = dict(images=lvis_images, annotations=lvis_anns, categories=[])
        info[f'lvis_{split}'] = lvis_json
    # LVIS categories need the counts of both splits
    freq = ['r' if c < 3 else 'c' if c < 6 else 'f' for c in lvis_cats_count]
    lvis_categories = [dict(id=i + 1, name=n, synonyms=[n], frequency=freq[i],
                            image_count=int(lvis_cats_count[i]),
                            instance_count=int(lvis_cats_count[i]))
                       for i, n in enumerate(LVIS_CLASSES)]
    for split in ('train', 'val'):
        lvis_json = info.pop(f'lvis_{split}')
        lvis_json['categories'] = lvis_categories
        _dump_json(lvis_json, osp.join(root, 'lvis', f'lvis_v1_{split}.json'))

    # referring: refs pickles + instances.json per dataset
    refer_instances = dict(images=refcoco_images, annotations=refcoco_anns,
                           categories=_coco_categories())
    specs = {'refcoco': ('refcoco', {'unc': ('val', 'testA', 'testB')}),
             'refcoco+': ('refcoco+', {'unc': ('val', 'testA', 'testB')}),
             'refcocog': ('refcocog', {'umd': ('val', 'test'), 'google': ('val', )})}
    sent_id = _Counter(0)
    for dname, (style, split_bys) in specs.items():
        _dump_json(refer_instances, osp.join(root, dname, 'instances.json'))
        for split_by, eval_splits in split_bys.items():
            refs = []
            ref_id = 0
            sent_id.value = 0
            for split in ('train', 'val'):
                for k, (img_anns, scene) in enumerate(zip(per_split_anns[split], scenes[split])):
                    # val gets about half of the eval images, the test splits share the rest
                    cycle = [eval_splits[0]] * max(1, len(eval_splits) - 1) + \
                        list(eval_splits[1:])
                    ref_split = 'train' if split == 'train' else cycle[k % len(cycle)]
                    unique = unique_sentences(scene, style)
                    for ann in img_anns:
                        sents = unique[ann['_thing']]
                        sentences = []
                        for s in sents:
                            sid = sent_id()
                            sentences.append(dict(tokens=s.split(), raw=s, sent_id=sid, sent=s))
                        refs.append(dict(
                            sent_ids=[x['sent_id'] for x in sentences],
                            file_name=f'COCO_train2014_{ann["image_id"]:012d}_{ann["id"]}.jpg',
                            ann_id=ann['id'], ref_id=ref_id, image_id=ann['image_id'],
                            split=ref_split, sentences=sentences,
                            category_id=ann['category_id']))
                        ref_id += 1
            os.makedirs(osp.join(root, dname), exist_ok=True)
            with open(osp.join(root, dname, f'refs({split_by}).p'), 'wb') as f:
                pickle.dump(refs, f, protocol=2)
    return info


def _write_semantic(root: str, scenes: Dict[str, List[Scene]], size: int) -> None:
    """ADE20K layout (uint8, 0 = other) and the 16-bit 300-class variant."""
    pc_lut = np.array(PC_CLASS_IDS, dtype=np.uint16)
    os.makedirs(osp.join(root, 'pc459'), exist_ok=True)
    with open(osp.join(root, 'pc459', 'classes.txt'), 'w') as f:
        f.write('\n'.join(pc459_classes()) + '\n')
    for split, (ade_split, tag) in {'train': ('training', 'train'),
                                    'val': ('validation', 'val')}.items():
        for k, scene in enumerate(scenes[split]):
            name = f'ADE_{tag}_{k + 1:08d}'
            sem = scene.semantic_map()
            ade = (sem + 1).astype(np.uint8)
            ade[:2, :] = 0  # a strip of "other" that reduce_zero_label turns into ignore
            base = osp.join(root, 'ade', 'ADEChallengeData2016')
            _imwrite(osp.join(base, 'images', ade_split, name + '.jpg'), scene.image)
            _imwrite(osp.join(base, 'annotations', ade_split, name + '.png'), ade)
            pc = pc_lut[sem]
            pc[:2, :] = IGNORE_INDEX_16BIT
            _imwrite(osp.join(root, 'pc459', 'images', ade_split, name + '.jpg'), scene.image)
            path = osp.join(root, 'pc459', 'annotations_459', ade_split, name + '.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            if not cv2.imwrite(path, pc):
                raise IOError(f'could not write {path}')


def _write_salient(root: str, scenes: Dict[str, List[Scene]]) -> None:
    """One salient shape per image, binary 0/255 PNG masks, in the three folder layouts."""
    for split in ('train', 'val'):
        for k, scene in enumerate(scenes[split]):
            mask = np.zeros(scene.stuff_map.shape, dtype=np.uint8)
            for t in scene.things:
                mask[t.mask] = 255
            ok, jpg = cv2.imencode('.jpg', scene.image[..., ::-1],
                                   [cv2.IMWRITE_JPEG_QUALITY, 95])
            ok2, png = cv2.imencode('.png', mask)
            assert ok and ok2
            for layout in SALIENT_LAYOUTS:
                img_dir, mask_dir = salient_dirs(layout, split)
                stem = f'sal_{split}_{k:05d}'
                for d, ext, data in ((img_dir, '.jpg', jpg), (mask_dir, '.png', png)):
                    out = osp.join(root, 'salient', layout, d, stem + ext)
                    os.makedirs(osp.dirname(out), exist_ok=True)
                    with open(out, 'wb') as f:
                        f.write(data.tobytes())


def _write_detection(root: str, scenes: Dict[str, List[Scene]], ids: Dict[str, List[int]],
                     size: int) -> None:
    """Box-only JSON + synthetic-mask JSON (every 5th box has none) + synthetic-caption JSON."""
    ann_id = _Counter(500000)
    for split in ('train', 'val'):
        images, boxes, syn_masks, captions = [], [], [], []
        for scene, img_id in zip(scenes[split], ids[split]):
            fname = f'obj_{img_id:08d}.jpg'
            _imwrite(osp.join(root, 'detection', 'images', split, fname), scene.image)
            images.append(_image_entry(img_id, fname, size))
            for t_idx, t in enumerate(scene.things):
                aid = ann_id()
                xywh = _xywh(t.mask)
                boxes.append(dict(id=aid, image_id=img_id, category_id=THING_CAT_IDS[t.cls],
                                  bbox=xywh, area=float(xywh[2] * xywh[3]), iscrowd=0))
                if aid % 5 != 0:
                    syn_masks.append(dict(id=aid, image_id=img_id, segmentation=mask_to_rle(t.mask),
                                          score=0.9))
                captions.append(dict(id=aid, image_id=img_id,
                                     captions=object_captions(scene, t_idx)))
        ann_dir = osp.join(root, 'detection', 'annotations')
        _dump_json(dict(images=images, annotations=boxes, categories=_coco_categories()),
                   osp.join(ann_dir, f'boxes_{split}.json'))
        _dump_json(dict(info=dict(description='synthetic masks (box-prompted)'),
                        annotations=syn_masks), osp.join(ann_dir, f'synthetic_masks_{split}.json'))
        _dump_json(dict(info=dict(description='synthetic object captions, five per box'),
                        annotations=captions),
                   osp.join(ann_dir, f'synthetic_captions_{split}.json'))


def generate_synthetic_world(out_dir: str, seed: int = 0, num_train: int = 24, num_val: int = 8,
                             img_size: int = 128, max_things: int = 4) -> dict:
    """Write the whole synthetic world under ``out_dir`` (deterministic given ``seed``).

    Args:
        out_dir: output root (created if needed; files are overwritten).
        seed: random seed; same seed, same bytes.
        num_train: train images per format family (COCO-like, ADE-like, salient, detection).
        num_val: val images per format family.
        img_size: square image side in pixels.
        max_things: most shapes per COCO-like image.

    Returns:
        The content of ``world_info.json``: classes, ids, paths and image counts.
    """
    if num_train < 2 or num_val < 1:
        raise ValueError('the world needs at least 2 train and 1 val image')
    if img_size < 32:
        raise ValueError('img_size must be at least 32')
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    seq = np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(s) for s in seq.spawn(5)]

    def scenes_for(rng: np.random.Generator, salient: bool = False,
                   empty_last_train: bool = False) -> Dict[str, List[Scene]]:
        out = {}
        for split, n in (('train', num_train), ('val', num_val)):
            out[split] = []
            for k in range(n):
                if salient:
                    n_things = 1
                elif empty_last_train and split == 'train' and k == n - 1:
                    n_things = 0  # an image without annotations (filter_empty_gt tests)
                else:
                    n_things = int(rng.integers(1, max_things + 1))
                out[split].append(render_scene(rng, img_size, n_things, salient=salient))
        return out

    coco_ids = {'train': [100 + k for k in range(num_train)],
                'val': [900000 + k for k in range(num_val)]}
    det_ids = {'train': [2000 + k for k in range(num_train)],
               'val': [3000 + k for k in range(num_val)]}
    _write_coco_family(out_dir, scenes_for(rngs[0], empty_last_train=True), coco_ids, img_size,
                       rngs[4])
    _write_semantic(out_dir, scenes_for(rngs[1]), img_size)
    _write_salient(out_dir, scenes_for(rngs[2], salient=True))
    _write_detection(out_dir, scenes_for(rngs[3]), det_ids, img_size)
    info = dict(
        seed=seed, img_size=img_size, num_train=num_train, num_val=num_val,
        thing_classes=list(THING_CLASSES), thing_cat_ids=list(THING_CAT_IDS),
        stuff_classes=list(STUFF_CLASSES), stuff_cat_ids=list(STUFF_CAT_IDS),
        semantic_classes=list(SEMANTIC_CLASSES), lvis_classes=list(LVIS_CLASSES),
        pc_class_ids=list(PC_CLASS_IDS), pc_num_classes=PC_NUM_CLASSES,
        coco_image_ids=coco_ids, detection_image_ids=det_ids,
        foreground_prompt=FOREGROUND_PROMPT, seconds=round(time.time() - t0, 2))
    _dump_json(info, osp.join(out_dir, 'world_info.json'))
    return info
