#!/usr/bin/env python
"""Synthetic masks for box-only detection data with a box-prompted segmenter (SAM / HQ-SAM /
SAM 2): the ``syn_mask_file`` of :class:`BoxCaptionDataset` (paper section 3.4).

Usage::

    # one process (CPU by default; --device cuda:0 for a GPU)
    python tools/dataset_converters/box2mask.py data/o365/annotations/train.json \\
        data/o365/images/train --out data/o365/annotations/synthetic_masks_train.json \\
        --predictor sam --model-type vit_h --checkpoint checkpoints/sam_vit_h_4b8939.pth
    # 4 shards (4 machines, or: torchrun --nproc-per-node 4 ... --device cuda), then merge
    python tools/dataset_converters/box2mask.py ... --shard 2/4
    python tools/dataset_converters/box2mask.py ... --merge 4   # or tools/dataset_converters/merge_shards.py

A killed run resumes from ``<out>.journal`` when rerun with the same arguments. The last
stdout line is the run summary as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmquerymeld.annotation.runner import add_input_args, add_runner_args
    p = argparse.ArgumentParser(description='COCO box JSON + images -> synthetic-mask JSON.')
    add_input_args(p, 'output synthetic-mask JSON')
    p.add_argument('--predictor', default='sam', help="registered predictor: 'sam', 'hq-sam', "
                   "'sam2' (mmquerymeld.annotation.box_predictors)")
    p.add_argument('--checkpoint', default=None, help='model checkpoint (state dict) path')
    p.add_argument('--model-type', default='vit_b', help='vit_b | vit_l | vit_h (SAM, HQ-SAM)')
    p.add_argument('--arch', default=None, help='JSON dict of SAM size overrides (tests)')
    p.add_argument('--model-cfg', default=None, help='SAM 2 model config name')
    p.add_argument('--random-weights', action='store_true',
                   help='allow running without --checkpoint (benchmarks only)')
    p.add_argument('--device', default='cpu', help="torch device; 'cuda' under torchrun picks "
                   'cuda:LOCAL_RANK')
    p.add_argument('--multimask', action='store_true', help='best of 3 masks per box')
    p.add_argument('--max-boxes', type=int, default=64, help='most boxes per decoder call')
    p.add_argument('--min-area', type=int, default=16, help='fewest mask pixels kept')
    p.add_argument('--box-margin', type=float, default=0.05,
                   help='mask kept inside the box grown by this fraction of its sides')
    add_runner_args(p)
    return p.parse_args(argv)


def predictor_cfg(args: argparse.Namespace) -> dict:
    """The :data:`BOX_PREDICTORS` config from the CLI arguments."""
    if not args.checkpoint and not args.random_weights:
        raise SystemExit('box2mask: --checkpoint is required (or --random-weights, benchmarks only)')
    device = args.device
    if device == 'cuda' and 'LOCAL_RANK' in os.environ:
        device = f'cuda:{int(os.environ["LOCAL_RANK"])}'
    if args.predictor == 'sam2':
        return dict(type='sam2', checkpoint=args.checkpoint, model_cfg=args.model_cfg,
                    device=device, multimask=args.multimask)
    return dict(type=args.predictor, checkpoint=args.checkpoint, model_type=args.model_type,
                arch=json.loads(args.arch) if args.arch else None, device=device,
                multimask=args.multimask, max_boxes=args.max_boxes)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmquerymeld.annotation.runner import merge_shards, parse_shard
    if args.merge is not None:
        summary = merge_shards(args.out, args.merge)
    else:
        from mmquerymeld.annotation.box2mask import box2mask
        summary = box2mask(args.box_json, args.image_root, args.out, predictor_cfg(args),
                           min_area=args.min_area, box_margin=args.box_margin,
                           shard=parse_shard(args.shard), progress=not args.no_progress)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == '__main__':
    main()
