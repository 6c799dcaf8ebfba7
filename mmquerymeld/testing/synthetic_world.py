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
and paths. The CLI is ``tools/dataset_converters/make_synthetic_world.py``. The
``mmquerymeld.testing`` package is not imported by ``import mmquerymeld``: training never loads it.
"""
from __future__ import annotations

import os
import os.path as osp
import time
from typing import Dict, List, Union

import numpy as np

from .coco_writer import write_coco_family
from .detection_writer import write_detection
from .file_io import dump_json
from .map_writers import write_salient, write_semantic
from .scenes import Scene, render_scene
from .world_styles import SceneStyle, get_style
from .world_classes import (FOREGROUND_PROMPT, LVIS_CLASSES, PC_CLASS_IDS, PC_NUM_CLASSES,
                            SEMANTIC_CLASSES, STUFF_CAT_IDS, STUFF_CLASSES, THING_CAT_IDS,
                            THING_CLASSES)


def generate_synthetic_world(out_dir: str, seed: int = 0, num_train: int = 24, num_val: int = 8,
                             img_size: int = 128, max_things: int = 4,
                             style: Union[str, SceneStyle] = 'default') -> dict:
    """Write the whole synthetic world under ``out_dir`` (deterministic given ``seed``).

    Args:
        out_dir: output root (created if needed; files are overwritten).
        seed: random seed; same seed, same bytes.
        num_train: train images per format family (COCO-like, ADE-like, salient, detection).
        num_val: val images per format family.
        img_size: square image side in pixels.
        max_things: most shapes per COCO-like image (unless ``style`` sets ``num_things``).
        style: a name in :data:`~.world_styles.STYLES` or a :class:`~.world_styles.SceneStyle`
            (``'coco'``: the query study's COCO-like world; see :mod:`.world_styles`).

    Returns:
        The content of ``world_info.json``: classes, ids, paths and image counts.
    """
    if num_train < 2 or num_val < 1:
        raise ValueError('the world needs at least 2 train and 1 val image')
    if img_size < 32:
        raise ValueError('img_size must be at least 32')
    scene_style = get_style(style)
    lo_things, hi_things = scene_style.num_things or (1, max_things)
    t0 = time.time()
    os.makedirs(out_dir, exist_ok=True)
    seq = np.random.SeedSequence(seed)
    rngs = [np.random.default_rng(s) for s in seq.spawn(5)]

    def scenes_for(rng: np.random.Generator, salient: bool = False,
                   empty_last_train: bool = False) -> Dict[str, List[Scene]]:
        """The train and val scenes of one format family, all drawn from ``rng``."""
        out = {}
        for split, n in (('train', num_train), ('val', num_val)):
            out[split] = []
            for k in range(n):
                if salient:
                    n_things = 1
                elif empty_last_train and split == 'train' and k == n - 1:
                    n_things = 0  # an image without annotations (filter_empty_gt tests)
                else:
                    n_things = int(rng.integers(lo_things, hi_things + 1))
                out[split].append(render_scene(rng, img_size, n_things, salient=salient,
                                               style=scene_style))
        return out

    coco_ids = {'train': [100 + k for k in range(num_train)],
                'val': [900000 + k for k in range(num_val)]}
    det_ids = {'train': [2000 + k for k in range(num_train)],
               'val': [3000 + k for k in range(num_val)]}
    write_coco_family(out_dir, scenes_for(rngs[0], empty_last_train=True), coco_ids, img_size,
                       rngs[4])
    write_semantic(out_dir, scenes_for(rngs[1]), img_size)
    write_salient(out_dir, scenes_for(rngs[2], salient=True))
    write_detection(out_dir, scenes_for(rngs[3]), det_ids, img_size)
    info = dict(
        seed=seed, img_size=img_size, num_train=num_train, num_val=num_val,
        style=style if isinstance(style, str) else 'custom', style_settings=scene_style.as_dict(),
        thing_classes=list(THING_CLASSES), thing_cat_ids=list(THING_CAT_IDS),
        stuff_classes=list(STUFF_CLASSES), stuff_cat_ids=list(STUFF_CAT_IDS),
        semantic_classes=list(SEMANTIC_CLASSES), lvis_classes=list(LVIS_CLASSES),
        pc_class_ids=list(PC_CLASS_IDS), pc_num_classes=PC_NUM_CLASSES,
        coco_image_ids=coco_ids, detection_image_ids=det_ids,
        foreground_prompt=FOREGROUND_PROMPT, seconds=round(time.time() - t0, 2))
    dump_json(info, osp.join(out_dir, 'world_info.json'))
    return info
