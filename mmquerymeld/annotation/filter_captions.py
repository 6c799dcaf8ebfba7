"""``filter_captions``: drop synthetic captions whose CLIP score with their object is low.

UniLSeg section 3.3: automatically annotated (region, caption) pairs are filtered by CLIP score.
Two stages, so a new threshold needs no new scoring:

1. score (the expensive part, on :mod:`.runner`: journal, resume, shards, bad input): every
   caption of ``caption_json`` against the crop of its box (same context margin as the captioner
   used, from the caption file's ``info``), written to ``<out>.scores.json``;
2. threshold: pairs with ``score < threshold`` dropped, objects left without captions dropped;
   the filtered caption JSON (:class:`BoxCaptionDataset`'s ``caption_file`` format, scores kept)
   and a PNG histogram of all scores with the threshold marked are written atomically.
"""
from __future__ import annotations

import io
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmquerymeld.utils.atomic import atomic_write
from .clip_filter import ClipScorer
from .crops import crop_boxes
from .runner import ImageJob, load_box_json, make_jobs, merge_shards, run_images, shard_path

TOOL = 'filter_captions'
SCORE_TOOL = 'filter_captions.score'


def scores_path(out_file: str) -> str:
    """Where stage 1 writes all scores: ``a/b.json`` -> ``a/b.scores.json``."""
    stem, ext = osp.splitext(out_file)
    return f'{stem}.scores{ext or ".json"}'


def default_hist_path(out_file: str) -> str:
    """Default histogram path: ``a/b.json`` -> ``a/b_hist.png``."""
    return f'{osp.splitext(out_file)[0]}_hist.png'


def load_caption_file(path: str) -> Tuple[dict, Dict[int, dict]]:
    """``(info, {box id: record})`` of a caption JSON (``caption_objects`` output or alike)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'caption JSON not found: {path}')
    with open(path, 'r', encoding='utf-8') as f:
        data = json.load(f)
    recs = data.get('annotations') if isinstance(data, dict) else None
    if not isinstance(recs, list):
        raise KeyError(f'{path}: expected {{"annotations": [{{"id", "captions"}}, ...]}}')
    out = {}
    for rec in recs:
        if 'id' not in rec or not isinstance(rec.get('captions'), list):
            raise KeyError(f'{path}: a record lacks "id" or a "captions" list: {str(rec)[:120]}')
        out[int(rec['id'])] = rec
    return data.get('info', {}), out


def make_process(scorer: ClipScorer, captions: Dict[int, dict], margin: float):
    """The runner's ``process(job, rgb)``: all pairs of an image scored in one batch."""

    def process(job: ImageJob, rgb: np.ndarray) -> Tuple[List[dict], Dict[str, int]]:
        crops, _ = crop_boxes(rgb, [a['bbox'] for a in job.anns], margin)
        caps = [[str(c) for c in captions[int(a['id'])]['captions']] for a in job.anns]
        scores = scorer.score(crops, caps)
        records = [dict(id=int(a['id']), image_id=job.image_id, captions=c, scores=s)
                   for a, c, s in zip(job.anns, caps, scores)]
        return records, {}

    return process


def apply_threshold(scores: Sequence[dict], threshold: float) -> Tuple[List[dict], dict]:
    """Keep the pairs with ``score >= threshold``.

    Args:
        scores: Records ``{"id", "image_id", "captions", "scores"}`` of stage 1.
        threshold: Lowest kept score.

    Returns:
        ``(filtered records, counts)``; a filtered record keeps ``captions`` and their
        ``scores``; objects without a kept caption are left out.
    """
    kept, pairs, pairs_kept = [], 0, 0
    for rec in scores:
        pairs += len(rec['scores'])
        good = [(c, s) for c, s in zip(rec['captions'], rec['scores']) if s >= threshold]
        pairs_kept += len(good)
        if good:
            kept.append(dict(id=rec['id'], image_id=rec['image_id'],
                             captions=[c for c, _ in good], scores=[s for _, s in good]))
    counts = dict(objects=len(scores), objects_kept=len(kept),
                  objects_dropped=len(scores) - len(kept), pairs=pairs, pairs_kept=pairs_kept,
                  pairs_dropped=pairs - pairs_kept)
    return kept, counts


def write_histogram(path: str, scores: Sequence[float], threshold: float, bins: int = 50) -> None:
    """PNG histogram of the scores with the threshold as a vertical line (written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    vals = np.asarray(scores, dtype=np.float64)
    if vals.size:
        ax.hist(vals, bins=bins, color='tab:blue', alpha=0.8)
    below = int((vals < threshold).sum())
    ax.axvline(threshold, color='tab:red', linestyle='--',
               label=f'threshold {threshold:g}: {below} of {vals.size} pairs dropped')
    ax.set_xlabel('CLIP score (cosine similarity of crop and caption)')
    ax.set_ylabel('pairs')
    ax.legend(loc='upper left', fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    atomic_write(path, buf.getvalue())


def _stats(vals: Sequence[float]) -> dict:
    if not vals:
        return {}
    arr = np.asarray(vals, dtype=np.float64)
    return {k: round(float(f(arr)), 6) for k, f in
            (('min', np.min), ('mean', np.mean), ('median', np.median), ('max', np.max))}


def finish(scores_file: str, out_file: str, threshold: float, hist_file: Optional[str] = None,
           extra: Optional[dict] = None) -> dict:
    """Stage 2: threshold the scores file, write the filtered JSON and the histogram.

    Args:
        scores_file: Stage 1's output. out_file: filtered caption JSON. threshold: lowest kept
        score. hist_file: histogram PNG (default :func:`default_hist_path`). extra: more
        summary entries (e.g. caption records without a box).

    Returns:
        The summary (scoring run's summary under ``scoring``, pair and object counts, score
        statistics, threshold), also stored in the output's ``info``.
    """
    with open(scores_file, 'r', encoding='utf-8') as f:
        scored = json.load(f)
    kept, counts = apply_threshold(scored['annotations'], threshold)
    all_scores = [s for r in scored['annotations'] for s in r['scores']]
    hist_file = hist_file or default_hist_path(out_file)
    summary = dict(tool=TOOL, threshold=threshold, **counts, score_stats=_stats(all_scores),
                   scoring=scored['info']['summary'], histogram=hist_file, **(extra or {}))
    info = dict(tool=TOOL, settings=dict(scored['info']['settings'], threshold=threshold),
                summary=summary)
    atomic_write(out_file, json.dumps(dict(info=info, annotations=kept)) + '\n')
    write_histogram(hist_file, all_scores, threshold)
    from mmengine.logging import print_log
    print_log(f'{TOOL}: threshold {threshold:g}: kept {counts["pairs_kept"]} of {counts["pairs"]}'
              f' pairs, {counts["objects_kept"]} of {counts["objects"]} objects; wrote '
              f'{out_file} and {hist_file}', logger='current')
    return summary


def filter_captions(caption_json: str, box_json: str, image_root: str, out_file: str,
                    model_name: str, pretrained: str, threshold: float, device: str = 'cpu',
                    margin: Optional[float] = None, batch_size: int = 64,
                    hist_file: Optional[str] = None, shard: Tuple[int, int] = (0, 1),
                    progress: bool = True, merge: Optional[int] = None) -> dict:
    """Score every caption of ``caption_json`` with CLIP and keep those >= ``threshold``.

    Args:
        caption_json: Caption JSON (``caption_objects`` output).
        box_json: The box JSON the captions were made from (images and boxes).
        image_root: Folder of the images.
        out_file: Filtered caption JSON; the scores go to :func:`scores_path` of it.
        model_name: open_clip architecture. pretrained: its weights (file or tag).
        threshold: Lowest kept CLIP score (cosine similarity).
        device: Torch device string. batch_size: crops / captions per forward pass.
        margin: Crop context margin; default: the one recorded by ``caption_objects``, else 0.2.
        hist_file: Histogram PNG (default :func:`default_hist_path`).
        shard: ``(index, count)``; a shard only scores (threshold after ``merge``).
        progress: Progress bar. merge: merge ``merge`` score shards, then threshold.

    Returns:
        The summary of :func:`finish`, or the scoring summary of a shard.
    """
    scores_file = scores_path(out_file)
    if merge:
        merge_shards(scores_file, merge)
        return finish(scores_file, out_file, threshold, hist_file)
    info, captions = load_caption_file(caption_json)
    if margin is None:
        margin = float(info.get('settings', {}).get('margin', 0.2))
    images, anns, _ = load_box_json(box_json)
    box_ids = {int(a['id']) for group in anns.values() for a in group}
    no_box = sum(1 for k in captions if k not in box_ids)
    anns = {img: [a for a in group if int(a['id']) in captions] for img, group in anns.items()}
    jobs, _ = make_jobs(images, anns, image_root)
    scorer = ClipScorer(model_name, pretrained, device=device, batch_size=batch_size)
    settings = dict(scorer=scorer.settings, margin=float(margin),
                    caption_file=osp.abspath(caption_json))
    summary = run_images(SCORE_TOOL, jobs, scores_file, make_process(scorer, captions, margin),
                         settings, shard=shard, progress=progress)
    if no_box:
        from mmengine.logging import print_log
        print_log(f'{TOOL}: {no_box} caption records name a box id absent from {box_json}; '
                  'ignored', logger='current', level=30)
    if shard[1] > 1:
        return summary
    return finish(shard_path(scores_file, 0, 1), out_file, threshold, hist_file,
                  extra=dict(captions_without_box=no_box))
