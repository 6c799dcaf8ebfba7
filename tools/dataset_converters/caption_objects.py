#!/usr/bin/env python
"""Five synthetic captions per box of a COCO-format box JSON (paper section 3.4).

Usage::

    python tools/dataset_converters/caption_objects.py \
        data/objects365/annotations/zhiyuan_objv2_train.json data/objects365/train/ \
        --model-dir checkpoints/blip-image-captioning-base \
        --out data/objects365/annotations/engine/captions_train.json --device cuda

The model directory is a local ``save_pretrained`` snapshot of a BLIP captioning model (e.g.
``Salesforce/blip-image-captioning-base``); nothing is downloaded. Resumable (rerun the same
command), shardable (``--shard i/n`` or torchrun, then ``--merge n``). Filter the output with
``filter_captions.py``; train on it with ``configs/querymeld/querymeld_r50_meld_o365syn.py``.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmquerymeld.annotation.runner import add_input_args, add_runner_args
    p = argparse.ArgumentParser(description='Caption every box with a region captioner.')
    add_input_args(p, 'caption JSON to write')
    p.add_argument('--captioner', default='BlipCaptioner',
                   help='registered captioner (mmquerymeld.annotation.captioners.CAPTIONERS)')
    p.add_argument('--model-dir', help='local directory of the captioning model')
    p.add_argument('--device', default='cpu', help="torch device ('cpu', 'cuda', 'cuda:1')")
    p.add_argument('--num-captions', type=int, default=5, help='captions per object')
    p.add_argument('--decoding', choices=('sample', 'beam'), default='sample')
    p.add_argument('--top-p', type=float, default=0.9, help='nucleus mass (sampling)')
    p.add_argument('--temperature', type=float, default=1.0, help='temperature (sampling)')
    p.add_argument('--num-beams', type=int, default=5, help='beams (beam decoding)')
    p.add_argument('--max-new-tokens', type=int, default=30)
    p.add_argument('--prompt', default=None, help="decoder prompt, e.g. 'a picture of'")
    p.add_argument('--dtype', choices=('float32', 'float16', 'bfloat16'), default='float32')
    p.add_argument('--batch-size', type=int, default=32, help='crops per forward pass')
    p.add_argument('--margin', type=float, default=0.2,
                   help='context added on each side of a box, as a fraction of its size')
    p.add_argument('--seed', type=int, default=0, help='sampling seed (image k: seed + k)')
    add_runner_args(p)
    args = p.parse_args(argv)
    if args.merge is None and not args.model_dir:
        p.error('--model-dir is required (unless --merge)')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmquerymeld.annotation.caption_objects import caption_objects
    from mmquerymeld.annotation.runner import parse_shard
    captioner = dict(type=args.captioner, model_dir=args.model_dir, device=args.device,
                     num_captions=args.num_captions, decoding=args.decoding, top_p=args.top_p,
                     temperature=args.temperature, num_beams=args.num_beams,
                     max_new_tokens=args.max_new_tokens, prompt=args.prompt,
                     batch_size=args.batch_size, dtype=args.dtype)
    summary = caption_objects(args.box_json, args.image_root, args.out, captioner,
                              margin=args.margin, seed=args.seed,
                              shard=parse_shard(args.shard) if args.merge is None else (0, 1),
                              progress=not args.no_progress, merge=args.merge)
    print(json.dumps(summary))
    return summary


if __name__ == '__main__':
    main()
