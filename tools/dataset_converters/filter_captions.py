#!/usr/bin/env python
"""Drop synthetic captions whose CLIP score with their object crop is under a threshold.

Usage::

    python tools/dataset_converters/filter_captions.py \
        data/objects365/annotations/engine/captions_train.json \
        data/objects365/annotations/zhiyuan_objv2_train.json data/objects365/train/ \
        --model ViT-B-16 --pretrained laion2b_s34b_b88k --threshold 0.2 \
        --out data/objects365/annotations/engine/captions_filtered_train.json

Writes the filtered caption JSON (``BoxCaptionDataset``'s ``caption_file``, scores kept), all
scores to ``<out stem>.scores.json`` (rerun with another ``--threshold`` to re-filter without
re-scoring) and a histogram PNG (``--hist``, default ``<out stem>_hist.png``). Resumable and
shardable like the other annotation tools (``--shard i/n``, then ``--merge n``).
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
    p = argparse.ArgumentParser(description='CLIP-score filter of synthetic captions.')
    p.add_argument('caption_json', help='caption JSON (caption_objects.py output)')
    add_input_args(p, 'filtered caption JSON to write')
    p.add_argument('--model', default='ViT-B-16', help='open_clip architecture')
    p.add_argument('--pretrained', default=None,
                   help='local checkpoint file or open_clip pretrained tag of --model')
    p.add_argument('--threshold', type=float, required=True,
                   help='lowest kept CLIP score (cosine similarity in [-1, 1])')
    p.add_argument('--device', default='cpu', help="torch device ('cpu', 'cuda', 'cuda:1')")
    p.add_argument('--margin', type=float, default=None,
                   help='crop context margin (default: the one caption_objects recorded)')
    p.add_argument('--batch-size', type=int, default=64, help='crops / captions per pass')
    p.add_argument('--hist', default=None, help='histogram PNG (default <out stem>_hist.png)')
    add_runner_args(p)
    args = p.parse_args(argv)
    if args.merge is None and not args.pretrained:
        p.error('--pretrained is required (random CLIP weights give meaningless scores)')
    return args


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    from mmquerymeld.annotation.filter_captions import filter_captions
    from mmquerymeld.annotation.runner import parse_shard
    summary = filter_captions(
        args.caption_json, args.box_json, args.image_root, args.out, model_name=args.model,
        pretrained=args.pretrained, threshold=args.threshold, device=args.device,
        margin=args.margin, batch_size=args.batch_size, hist_file=args.hist,
        shard=parse_shard(args.shard) if args.merge is None else (0, 1),
        progress=not args.no_progress, merge=args.merge)
    print(json.dumps(summary))
    return summary


if __name__ == '__main__':
    main()
