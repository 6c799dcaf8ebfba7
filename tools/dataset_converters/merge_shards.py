#!/usr/bin/env python
"""Join the shard outputs of an annotation tool (box2mask, caption_objects, filter_captions).

Usage::

    python tools/dataset_converters/merge_shards.py OUT.json --count 4

reads ``OUT.shard{i}of4.json`` for i in 0..3 and writes ``OUT.json`` atomically: the same
annotations as one process over all images; the summary counts summed. The last stdout line is
the merged summary as JSON.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
from typing import Optional, Sequence

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    p = argparse.ArgumentParser(description='Merge the shard outputs of an annotation tool.')
    p.add_argument('out', help='the --out of the sharded runs')
    p.add_argument('--count', type=int, required=True, help='number of shards')
    args = p.parse_args(argv)
    from mmquerymeld.annotation.runner import merge_shards
    summary = merge_shards(args.out, args.count)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == '__main__':
    main()
