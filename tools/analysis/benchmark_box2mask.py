#!/usr/bin/env python
"""Images per second of ``box2mask`` with SAM at real size (RANDOM weights: speed only).

Renders a few synthetic scenes at ``--size`` px (coloured shapes, one box per shape), writes a
COCO box JSON, and runs :func:`mmquerymeld.annotation.box2mask.box2mask` over them with an
already built predictor, so the time is the tool's loop (image read, SAM image encoder once per
image, all boxes in one decoder batch, RLE encoding, journal), not the model build. Prints one
line.

Usage::

    python tools/analysis/benchmark_box2mask.py --images 3 --size 1024 --model-type vit_b
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import tempfile
import time
from typing import Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def write_scenes(root: str, num_images: int, size: int, things: int, seed: int = 0) -> str:
    """``num_images`` rendered scenes + their box JSON under ``root``; returns the JSON path."""
    import numpy as np

    from mmquerymeld.testing.file_io import imwrite, mask_xywh
    from mmquerymeld.testing.scenes import render_scene
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(num_images):
        scene = render_scene(rng, size, things)
        name = f'{i:04d}.jpg'
        imwrite(osp.join(root, 'images', name), scene.image)
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
        for t in scene.things:
            if t.mask.any():
                xywh = mask_xywh(t.mask)
                anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, bbox=xywh,
                                 area=float(xywh[2] * xywh[3]), iscrowd=0))
    path = osp.join(root, 'boxes.json')
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(dict(images=images, annotations=anns, categories=[dict(id=1, name='shape')]),
                  f)
    return path


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description='box2mask speed with SAM (random weights).')
    p.add_argument('--images', type=int, default=3)
    p.add_argument('--size', type=int, default=1024, help='image side (px)')
    p.add_argument('--things', type=int, default=4, help='shapes (boxes) per image')
    p.add_argument('--model-type', default='vit_b')
    p.add_argument('--predictor', default='sam', help="'sam' or 'hq-sam'")
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)
    import torch

    from mmquerymeld.annotation.box2mask import box2mask
    from mmquerymeld.annotation.box_predictors import BOX_PREDICTORS
    cfg = dict(type=args.predictor, checkpoint=None, model_type=args.model_type,
               device=args.device)
    torch.manual_seed(0)
    t0 = time.time()
    pred = BOX_PREDICTORS.build(cfg)
    build_s = time.time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        box_json = write_scenes(tmp, args.images, args.size, args.things)
        summary = box2mask(box_json, osp.join(tmp, 'images'), osp.join(tmp, 'masks.json'),
                           cfg, predictor_obj=pred, progress=False)
    per_image = summary['seconds'] / max(summary['images_processed'], 1)
    print(f'box2mask benchmark: {args.predictor} {args.model_type} (RANDOM weights), '
          f'{args.device}, {args.size} px, {summary["images_processed"]} images, '
          f'{summary["objects"]} boxes: {summary["images_per_second"]:.4f} images/s '
          f'({per_image:.2f} s/image; model build {build_s:.1f} s not counted; '
          f'torch threads {torch.get_num_threads()})', flush=True)
    return summary


if __name__ == '__main__':
    main()
