"""Label-map formats: ADE20K (8-bit), the 16-bit 300-class variant, the salient folder layouts."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, List

import cv2
import numpy as np

from mmquerymeld.datasets.folders import SALIENT_LAYOUTS, salient_dirs
from mmquerymeld.datasets.utils import IGNORE_INDEX_16BIT
from .file_io import imwrite
from .scenes import Scene
from .world_classes import PC_CLASS_IDS, pc459_classes


def write_semantic(root: str, scenes: Dict[str, List[Scene]], size: int) -> None:
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
            imwrite(osp.join(base, 'images', ade_split, name + '.jpg'), scene.image)
            imwrite(osp.join(base, 'annotations', ade_split, name + '.png'), ade)
            pc = pc_lut[sem]
            pc[:2, :] = IGNORE_INDEX_16BIT
            imwrite(osp.join(root, 'pc459', 'images', ade_split, name + '.jpg'), scene.image)
            path = osp.join(root, 'pc459', 'annotations_459', ade_split, name + '.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            if not cv2.imwrite(path, pc):
                raise IOError(f'could not write {path}')


def write_salient(root: str, scenes: Dict[str, List[Scene]]) -> None:
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

