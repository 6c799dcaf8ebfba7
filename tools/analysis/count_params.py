"""Print the parameter count of a model config, per component.

Usage::

    python tools/analysis/count_params.py configs/querymeld/querymeld_r50_conditional.py
    python tools/analysis/count_params.py <config> --cfg-options model.head.num_learnable_queries=0

The text tower (``head.text_encoder.tower``) is reported apart: Mask DINO has a fixed
classifier instead, so "without text tower" is the number to compare with Mask DINO R50 (52M with
FFN 2048, per its README). The model is built on CPU with random weights (nothing is downloaded).
"""
import argparse
from collections import OrderedDict
from typing import Dict, Iterable, Tuple

import torch
from mmengine.config import Config, DictAction
from torch import nn

#: Reference from Mask DINO's README (R50, 300 queries, FFN 2048).
MASK_DINO_R50_PARAMS_M = 52.0


def count(params: Iterable[nn.Parameter]) -> int:
    """Number of elements of distinct parameters."""
    seen, total = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def breakdown(model: nn.Module) -> Tuple['OrderedDict[str, int]', int, int]:
    """Parameter counts per component.

    Returns:
        tuple: ordered ``{component: count}``, total count, and the text tower's count.
    """
    parts: Dict[str, nn.Module] = OrderedDict()
    parts['backbone'] = model.backbone
    if getattr(model, 'neck', None) is not None:
        parts['neck'] = model.neck
    head = model.head
    for name in ('pixel_decoder', 'decoder', 'dn_generator', 'mask_embed', 'box_heads'):
        module = getattr(head, name, None)
        if module is not None:
            parts[f'head.{name}'] = module
    gen = head.query_generator
    if getattr(gen, 'query_selector', None) is not None:
        parts['head.query_generator.query_selector'] = gen.query_selector
    learnable = [getattr(gen, n).weight for n in ('learnable_content', 'learnable_anchors')
                 if hasattr(gen, n)]
    text_tower = count(head.text_encoder.tower.parameters())
    counts: 'OrderedDict[str, int]' = OrderedDict(
        (k, count(m.parameters())) for k, m in parts.items())
    counts['head.learnable_queries'] = count(learnable)
    counts['head.text_classifier'] = count(head.text_classifier.parameters())
    counts['head.text_encoder (w/o tower)'] = count(head.text_encoder.parameters()) - text_tower
    counts['head.text_encoder.tower'] = text_tower
    return counts, count(model.parameters()), text_tower


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Count the parameters of a model config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, xxx=yyy')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    from mmdet.registry import MODELS
    from mmquerymeld.utils import register_all_modules

    register_all_modules()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model_cfg = cfg.model
    # random weights only: never download a backbone or a text tower here
    model_cfg.backbone.init_cfg = None
    model_cfg.head.text_encoder.pretrained = None
    with torch.device('cpu'):
        model = MODELS.build(model_cfg)
    counts, total, tower = breakdown(model)
    width = max(len(k) for k in counts) + 2
    print(f'config: {args.config}')
    for key, value in counts.items():
        print(f'  {key:<{width}}{value / 1e6:9.2f} M')
    print(f'  {"total":<{width}}{total / 1e6:9.2f} M')
    without = (total - tower) / 1e6
    print(f'  {"total without text tower":<{width}}{without:9.2f} M')
    print(f'Mask DINO R50 (README, FFN 2048): {MASK_DINO_R50_PARAMS_M:.0f} M; '
          f'difference without the text tower: {without - MASK_DINO_R50_PARAMS_M:+.2f} M')


if __name__ == '__main__':
    main()
