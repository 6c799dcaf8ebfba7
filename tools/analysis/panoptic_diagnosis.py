#!/usr/bin/env python
"""Which query won the pixels of things that instance inference finds and the panoptic map loses
(issue 11, item 2: the meld's instance mask AP is close to conditional-only while its PQ_th
collapses).

For every panoptic validation image the model's final-layer outputs are captured at the
post-processor (the real ``QueryMeldPostProcessor.predict_single``, which also produces the
official panoptic map with the config's ``test_cfg.panoptic``). For every ground-truth thing:

- *found* by instance inference (Mask2Former instance inference: the top ``max_per_image``
  query x class pairs by class probability): some pair of the thing's class whose binary mask
  has IoU >= 0.5 with it; the *finder* is the highest-scoring such pair's query;
- *kept* by the panoptic map: a segment of its class with IoU > 0.5 (PQ's matching rule).

Each found-but-lost thing gets a cause, the first that applies:
``finder not kept`` (its best class score <= object_mask_thr), ``finder's top class differs``,
``pixels won by another query`` (the majority winner of the thing's pixels in the per-pixel
``score x mask prob`` arg-max over kept queries, split by its query type and whether its class is
thing or stuff), ``finder rejected by iou_thr`` (won / own mask area < iou_thr),
``segment IoU <= 0.5``. Aggregated counts, a few examples, JSON + markdown::

    python tools/analysis/panoptic_diagnosis.py CONFIG CHECKPOINT [--out diag.json]
        [--cfg-options model.test_cfg.panoptic.object_mask_thr=0.25 ...]
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

TYPE_NAMES = {0: 'learnable', 1: 'conditional'}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Panoptic vs instance diagnosis (issue 11)')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='JSON output (a .md beside it); default: beside the '
                        'checkpoint, panoptic_diagnosis.json')
    parser.add_argument('--source', default='syn_coco_panoptic', help='panoptic source name')
    parser.add_argument('--examples', type=int, default=5)
    parser.add_argument('--cfg-options', nargs='+', default=[], help='key=value overrides')
    return parser.parse_args(argv)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of masks ``a`` [N, H, W] with ``b`` [H, W] (bool) -> [N]."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)


def diagnose_image(cls_logits: torch.Tensor, probs: torch.Tensor, qtypes: torch.Tensor,
                   thing_flags: Sequence[bool], gt_masks: torch.Tensor, gt_labels: torch.Tensor,
                   pan: torch.Tensor, cfg: dict, max_per_image: int = 100) -> List[dict]:
    """One record per ground-truth thing of one image.

    Args:
        cls_logits: [Q, K] class logits (the image's texts).
        probs: [Q, H, W] mask probabilities in the output frame.
        qtypes: [Q] long query types (0 learnable, 1 conditional).
        thing_flags: K bools.
        gt_masks: [N, H, W] bool; gt_labels: [N] long (index into the texts).
        pan: [H, W] long, the official panoptic map (``label + id * 1000``; void = K).
        cfg: ``test_cfg.panoptic`` (object_mask_thr, iou_thr, mask_thr).

    Returns:
        list[dict]: ``found``, ``kept``, and for found-but-lost things the ``cause`` and the
        finder / winner facts.
    """
    num_q, num_k = cls_logits.shape
    obj_thr = float(cfg.get('object_mask_thr', 0.25))
    iou_thr = float(cfg.get('iou_thr', 0.8))
    mask_thr = float(cfg.get('mask_thr', 0.5))
    sig = cls_logits.sigmoid()
    q_scores, q_labels = sig.max(-1)
    binary = probs >= 0.5
    # instance inference: top-k query x class pairs by class probability
    k = min(max_per_image, sig.numel())
    top_scores, top_idx = sig.flatten().topk(k)
    top_q, top_k = top_idx // num_k, top_idx % num_k
    # panoptic competition among kept queries (score x mask prob), as Mask2Former
    kept = q_scores > obj_thr
    weighted = torch.where(kept[:, None, None], q_scores[:, None, None] * probs,
                           torch.full_like(probs, -1.0))
    winner = weighted.argmax(0) if kept.any() else torch.full(pan.shape, -1, dtype=torch.long)
    own = (probs >= mask_thr).flatten(1).sum(1)
    won = torch.bincount(winner.flatten().clamp(min=0), minlength=num_q) * int(kept.any())
    seg_values = torch.unique(pan)
    records = []
    for g in range(gt_masks.shape[0]):
        label = int(gt_labels[g])
        if not thing_flags[label]:
            continue
        gmask = gt_masks[g]
        cand = top_k == label
        rec: Dict[str, object] = dict(label=label, area=int(gmask.sum()))
        found_q = None
        if cand.any():
            ious = iou(binary[top_q[cand]], gmask)
            ok = ious >= 0.5
            if ok.any():
                best = int(torch.nonzero(ok)[0])  # candidates are in score order
                found_q = int(top_q[cand][best])
                rec.update(finder_iou=round(float(ious[best]), 3))
        rec['found'] = found_q is not None
        kept_seg = False
        for v in seg_values.tolist():
            if v % 1000 == label:
                if float(iou((pan == v)[None], gmask)[0]) > 0.5:
                    kept_seg = True
                    break
        rec['kept'] = kept_seg
        if found_q is None or kept_seg:
            records.append(rec)
            continue
        q = found_q
        rec.update(finder=dict(query=q, type=TYPE_NAMES.get(int(qtypes[q]), 'unknown'),
                               score=round(float(q_scores[q]), 3),
                               score_of_gt_class=round(float(sig[q, label]), 3),
                               top_class=int(q_labels[q]),
                               top_class_is_thing=bool(thing_flags[int(q_labels[q])]),
                               top_class_is_gt=bool(int(q_labels[q]) == label),
                               kept=bool(kept[q]), own_area=int(own[q]), won_area=int(won[q])))
        wins = winner[gmask]
        wins = wins[wins >= 0]
        if wins.numel():
            w = int(torch.mode(wins).values)
            wl = int(q_labels[w])
            rec['winner'] = dict(query=w, type=TYPE_NAMES.get(int(qtypes[w]), 'unknown'),
                                 score=round(float(q_scores[w]), 3), label=wl,
                                 label_is_thing=bool(thing_flags[wl]), own_area=int(own[w]),
                                 share_of_gt=round(float((wins == w).float().mean()), 3),
                                 is_finder=w == q)
        pan_here = pan[gmask]
        values, counts = torch.unique(pan_here, return_counts=True)
        top = int(values[counts.argmax()])
        rec['panoptic_majority'] = ('void' if top % 1000 == num_k else
                                    ('stuff' if not thing_flags[top % 1000] else 'thing')
                                    + (' (gt class)' if top % 1000 == label else ' (other class)'))
        if not kept[q]:
            cause = 'finder not kept (score <= object_mask_thr)'
        elif int(q_labels[q]) != label:
            cause = "finder's top class differs"
        elif 'winner' in rec and not rec['winner']['is_finder']:
            wr = rec['winner']
            cause = (f"pixels won by another query ({wr['type']}, "
                     f"{'thing' if wr['label_is_thing'] else 'stuff'} class)")
        elif own[q] == 0 or won[q] / max(1, int(own[q])) < iou_thr:
            cause = 'finder rejected by iou_thr (won / own < iou_thr)'
        else:
            cause = 'segment IoU <= 0.5'
        rec['cause'] = cause
        records.append(rec)
    return records


def _kind(is_thing: bool) -> str:
    return 'thing' if is_thing else 'stuff'


def summarize(records: List[dict], examples: int) -> dict:
    """Aggregate counts over the image records."""
    things = len(records)
    found = [r for r in records if r['found']]
    lost = [r for r in found if not r['kept']]
    out = dict(gt_things=things, found_by_instance=len(found),
               kept_by_panoptic=sum(r['kept'] for r in records),
               found_and_kept=sum(r['kept'] for r in found), found_but_lost=len(lost),
               causes=dict(Counter(r['cause'] for r in lost).most_common()),
               finder_types=dict(Counter(r['finder']['type'] for r in lost)),
               finder_top_class=dict(Counter(
                   f"{r['finder']['type']} -> {_kind(r['finder']['top_class_is_thing'])} class"
                   for r in lost if not r['finder']['top_class_is_gt'])),
               winner_types=dict(Counter(f"{r['winner']['type']} "
                                         f"{'thing' if r['winner']['label_is_thing'] else 'stuff'}"
                                         for r in lost if 'winner' in r)),
               panoptic_majority=dict(Counter(r['panoptic_majority'] for r in lost)))
    scores = sorted(r['finder']['score'] for r in lost)
    if scores:
        out['lost_finder_score_median'] = scores[len(scores) // 2]
    out['examples'] = lost[:examples]
    return out


def to_markdown(summary: dict, title: str) -> str:
    lines = [f'## Panoptic diagnosis: {title}', '',
             f"gt things {summary['gt_things']}, found by instance inference "
             f"{summary['found_by_instance']}, kept by the panoptic map "
             f"{summary['kept_by_panoptic']}, found but lost {summary['found_but_lost']}", '',
             '| cause | count |', '|---|---|']
    lines += [f'| {k} | {v} |' for k, v in summary['causes'].items()]
    for key in ('finder_types', 'finder_top_class', 'winner_types', 'panoptic_majority'):
        lines += ['', f'{key}: ' + ', '.join(f'{k} {v}' for k, v in summary[key].items())]
    if 'lost_finder_score_median' in summary:
        lines += ['', f"median class score of the lost things' finders: "
                  f"{summary['lost_finder_score_median']}"]
    lines += ['', 'examples:', '']
    lines += [f'- `{json.dumps(e)}`' for e in summary['examples']]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    import mmquerymeld  # noqa: F401
    from mmengine.config import Config, DictAction  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint
    from mmdet.registry import MODELS

    from mmquerymeld.models.heads.mask_frame import MaskFrame
    from mmquerymeld.utils.atomic import atomic_write
    from mmquerymeld.utils.runtime import load_cfg

    opts = {}
    for item in args.cfg_options:
        key, val = item.split('=', 1)
        opts[key] = DictAction._parse_iterable(val)
    cfg = load_cfg(args.config, cfg_options=opts or None)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    post = model.head.post_processor
    pan_cfg = post.task_cfg('panoptic')
    captured: List[dict] = []
    original = post.predict_single

    def capture(cls_logits, mask_logits, boxes, img_meta, query_types=None, rescale=True):
        out = original(cls_logits, mask_logits, boxes, img_meta, query_types, rescale)
        if img_meta.get('task') == 'panoptic':
            k = len(img_meta['texts'])
            frame = MaskFrame.from_meta(mask_logits.shape[-2:], img_meta, rescale)
            captured.append(dict(cls=cls_logits[:, :k].detach(),
                                 probs=frame.upsample(mask_logits).sigmoid().detach(),
                                 qtypes=query_types.detach(), pan=out['pred_panoptic_seg']))
        return out

    post.predict_single = capture
    loader = Runner.build_dataloader(cfg.test_dataloader)
    records: List[dict] = []
    with torch.no_grad():
        for data in loader:
            samples = data['data_samples']
            if not any(s.metainfo.get('source') == args.source for s in samples):
                continue
            captured.clear()
            outs = model.test_step(data)
            for out, cap in zip(outs, captured):
                gt = out.gt_instances
                masks = gt.masks
                masks = torch.as_tensor(masks.to_ndarray() if hasattr(masks, 'to_ndarray')
                                        else masks).bool()
                pan = cap['pan'].sem_seg[0]
                recs = diagnose_image(cap['cls'], cap['probs'], cap['qtypes'],
                                      out.metainfo['thing_flags'], masks, gt.labels.long(),
                                      pan, pan_cfg)
                texts = out.metainfo['texts']
                for r in recs:
                    r['image'] = osp.basename(out.metainfo.get('img_path', '?'))
                    r['label'] = texts[r['label']]
                    if 'finder' in r:
                        r['finder']['top_class'] = texts[r['finder']['top_class']]
                    if 'winner' in r:
                        r['winner']['label'] = texts[r['winner']['label']]
                records.extend(recs)
    summary = summarize(records, args.examples)
    summary.update(config=args.config, checkpoint=args.checkpoint, test_cfg_panoptic=pan_cfg)
    out = args.out or osp.join(osp.dirname(args.checkpoint), 'panoptic_diagnosis.json')
    atomic_write(out, json.dumps(summary, indent=2))
    atomic_write(osp.splitext(out)[0] + '.md', to_markdown(summary, args.checkpoint))
    print(to_markdown(summary, args.checkpoint))
    return summary


if __name__ == '__main__':
    main()
