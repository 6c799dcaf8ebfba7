"""Benchmark the text side: vocabulary encoding time and cached classification cost.

For each vocabulary size (default 80 = COCO, 1203 = LVIS, 10000 = stress) a fresh
``OpenCLIPTextEncoder`` encodes a synthetic vocabulary (cold cache: tokenising + text tower, in chunks), then the cached
lookup and the per-forward cost of ``QueryTextClassifier`` (``[B, Q, query_dims]`` queries against
the K texts) are timed.

Example::

    python tools/analysis/benchmark_text_classifier.py --model QM-Tiny --templates photo
    python tools/analysis/benchmark_text_classifier.py --model ViT-B-16 --templates simple \
        --sizes 80 1203
"""
import argparse
import random
import time
from typing import Callable, List

import torch

from mmquerymeld.models.text import OpenCLIPTextEncoder, QueryTextClassifier, resolve_templates


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='QM-Tiny', help='open_clip architecture')
    parser.add_argument('--pretrained', default=None, help='checkpoint file or open_clip tag '
                        '(random init when omitted: timing does not depend on the weights)')
    parser.add_argument('--templates', default='photo', help='template set for class names')
    parser.add_argument('--sizes', type=int, nargs='+', default=[80, 1203, 10000])
    parser.add_argument('--chunk-size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=2, help='images per forward')
    parser.add_argument('--queries', type=int, default=400, help='queries per image (100+300)')
    parser.add_argument('--query-dims', type=int, default=256)
    parser.add_argument('--repeat', type=int, default=10, help='runs of the cached timings')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def synthetic_vocabulary(tokenizer, size: int, seed: int) -> List[str]:
    """``size`` distinct class names of one or two real BPE words (LVIS-like lengths)."""
    words = sorted(tok[:-4] for tok in tokenizer.encoder
                   if tok.endswith('</w>') and tok[:-4].isalpha() and len(tok) >= 7)
    rng = random.Random(seed)
    names: List[str] = []
    seen = set()
    while len(names) < size:
        name = ' '.join(rng.sample(words, rng.choice((1, 1, 2))))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    """Median wall time of ``fn`` in seconds (device-synchronised)."""
    times = []
    for _ in range(repeat):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    num_templates = len(resolve_templates(args.templates))
    print(f'model={args.model} pretrained={args.pretrained} templates={args.templates} '
          f'({num_templates} per name) chunk_size={args.chunk_size} device={device} '
          f'threads={torch.get_num_threads()} torch={torch.__version__}')
    print(f'forward: B={args.batch} Q={args.queries} query_dims={args.query_dims}')
    header = (f'{"K":>6} {"prompts":>8} {"passes":>6} {"encode_s":>9} {"per_name_ms":>11} '
              f'{"lookup_ms":>9} {"forward_ms":>10} {"lookup+fwd_ms":>13}')
    print(header)
    print('-' * len(header))
    for size in args.sizes:
        torch.manual_seed(args.seed)
        enc = OpenCLIPTextEncoder(
            model_name=args.model, pretrained=args.pretrained, templates=args.templates,
            chunk_size=args.chunk_size).to(device).eval()
        clf = QueryTextClassifier(query_dims=args.query_dims,
                                  text_dims=enc.text_dims).to(device).eval()
        names = synthetic_vocabulary(enc.tokenizer, size, args.seed)
        encode_s = timed(lambda: enc.encode_vocabulary(names), device)
        passes = enc.tower_calls
        queries = torch.randn(args.batch, args.queries, args.query_dims, device=device)
        texts = enc.encode_vocabulary(names)
        with torch.no_grad():
            lookup_s = timed(lambda: enc.encode_vocabulary(names), device, args.repeat)
            forward_s = timed(lambda: clf(queries, texts), device, args.repeat)
            both_s = timed(lambda: clf(queries, enc.encode_vocabulary(names)), device,
                           args.repeat)
        assert enc.tower_calls == passes, 'cached lookups must not run the text tower'
        print(f'{size:>6} {size * num_templates:>8} {passes:>6} {encode_s:>9.2f} '
              f'{1e3 * encode_s / size:>11.2f} {1e3 * lookup_s:>9.2f} {1e3 * forward_s:>10.2f} '
              f'{1e3 * both_s:>13.2f}')


if __name__ == '__main__':
    main()
