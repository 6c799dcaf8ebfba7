"""Detection formats: Objects365-style boxes, synthetic masks and synthetic captions per box."""
from __future__ import annotations

import os.path as osp
from typing import Dict, List

from mmquerymeld.datasets.utils import mask_to_rle
from .file_io import IdCounter, coco_categories, dump_json, image_entry, imwrite, mask_xywh
from .language import object_captions
from .scenes import Scene
from .world_classes import THING_CAT_IDS


def write_detection(root: str, scenes: Dict[str, List[Scene]], ids: Dict[str, List[int]],
                    size: int) -> None:
    """Box-only JSON + synthetic-mask JSON (every 5th box has none) + synthetic-caption JSON."""
    ann_id = IdCounter(500000)
    for split in ('train', 'val'):
        images, boxes, syn_masks, captions = [], [], [], []
        for scene, img_id in zip(scenes[split], ids[split]):
            fname = f'obj_{img_id:08d}.jpg'
            imwrite(osp.join(root, 'detection', 'images', split, fname), scene.image)
            images.append(image_entry(img_id, fname, size))
            for t_idx, t in enumerate(scene.things):
                aid = ann_id()
                xywh = mask_xywh(t.mask)
                boxes.append(dict(id=aid, image_id=img_id, category_id=THING_CAT_IDS[t.cls],
                                  bbox=xywh, area=float(xywh[2] * xywh[3]), iscrowd=0))
                if aid % 5 != 0:
                    syn_masks.append(dict(id=aid, image_id=img_id, segmentation=mask_to_rle(t.mask),
                                          score=0.9))
                captions.append(dict(id=aid, image_id=img_id,
                                     captions=object_captions(scene, t_idx)))
        ann_dir = osp.join(root, 'detection', 'annotations')
        dump_json(dict(images=images, annotations=boxes, categories=coco_categories()),
                   osp.join(ann_dir, f'boxes_{split}.json'))
        dump_json(dict(info=dict(description='synthetic masks (box-prompted)'),
                        annotations=syn_masks), osp.join(ann_dir, f'synthetic_masks_{split}.json'))
        dump_json(dict(info=dict(description='synthetic object captions, five per box'),
                        annotations=captions),
                   osp.join(ann_dir, f'synthetic_captions_{split}.json'))

