#!/usr/bin/env python
"""Write the synthetic world (every dataset format QueryMeldNet reads) to a folder.

Usage::

    python tools/dataset_converters/make_synthetic_world.py --out data/synthetic --seed 0

See ``mmquerymeld.testing.synthetic_world`` for the layout; configs read it through
``configs/_base_/datasets/synthetic_world.py``.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time
from typing import Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description='Generate the synthetic world.')
    parser.add_argument('--out', default='data/synthetic', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=24, help='train images per family')
    parser.add_argument('--num-val', type=int, default=8, help='val images per family')
    parser.add_argument('--img-size', type=int, default=128)
    parser.add_argument('--max-things', type=int, default=4)
    parser.add_argument('--style', default='default',
                        help="scene style: 'default' (the main job's world) or 'coco' (the query "
                        "study's COCO-like world: many small things, fragmented stuff, "
                        "camouflage; mmquerymeld/testing/world_styles.py)")
    args = parser.parse_args(argv)
    from mmquerymeld.testing import generate_synthetic_world
    t0 = time.time()
    info = generate_synthetic_world(args.out, seed=args.seed, num_train=args.num_train,
                                    num_val=args.num_val, img_size=args.img_size,
                                    max_things=args.max_things, style=args.style)
    print(json.dumps({k: info[k] for k in ('seed', 'img_size', 'num_train', 'num_val', 'style')}))
    print(f'synthetic world written to {args.out} in {time.time() - t0:.1f}s')
    return info


if __name__ == '__main__':
    main()
