"""``caption_objects``: several synthetic captions per box of a COCO-format box JSON.

Paper section 3.4 / appendix A.1.3 (COCO-syn, Objects365-syn): a region captioner describes every
box, five captions per object, on the box crop enlarged by a context margin. The output is the
caption JSON :class:`mmquerymeld.datasets.BoxCaptionDataset` reads (``caption_file``):
``{"info": {...}, "annotations": [{"id": box id, "image_id", "captions": [...], "bbox",
"crop"}]}``. The loop (journal, resume, shards, bad input, summary) is :mod:`.runner`'s.
"""
from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

from .captioners import RegionCaptioner, build_captioner
from .crops import crop_boxes
from .runner import ImageJob, load_box_json, make_jobs, merge_shards, run_images

TOOL = 'caption_objects'


def make_process(captioner: RegionCaptioner, margin: float, seed: int):
    """The runner's ``process(job, rgb)`` for one captioner.

    All boxes of an image are captioned in one call (batched by the captioner); the sampling seed
    is ``seed + image_id``, so a resumed or sharded run writes the same captions as one run.
    Empty captions are removed; an object left with none is dropped as ``'no_caption'``.
    """

    def process(job: ImageJob, rgb: np.ndarray) -> Tuple[List[dict], Dict[str, int]]:
        crops, windows = crop_boxes(rgb, [a['bbox'] for a in job.anns], margin)
        captions = captioner.caption(crops, seed=seed + job.image_id)
        records, dropped = [], Counter()
        for ann, window, caps in zip(job.anns, windows, captions):
            caps = [c for c in caps if c]
            if not caps:
                dropped['no_caption'] += 1
                continue
            records.append(dict(id=int(ann['id']), image_id=job.image_id, captions=caps,
                                bbox=[float(v) for v in ann['bbox']], crop=list(window)))
        return records, dict(dropped)

    return process


def caption_objects(box_json: str, image_root: str, out_file: str, captioner: Dict[str, object],
                    margin: float = 0.2, seed: int = 0, shard: Tuple[int, int] = (0, 1),
                    progress: bool = True, merge: Optional[int] = None) -> dict:
    """Caption every box of ``box_json``; write ``out_file`` (or one shard of it).

    Args:
        box_json: COCO-format box-only JSON (``images``, ``annotations`` with ``bbox``).
        image_root: Folder the images' ``file_name`` entries are relative to.
        out_file: Caption JSON to write (a shard writes ``runner.shard_path(out_file, i, n)``;
            the journal is ``<that>.journal``).
        captioner: Captioner config, ``dict(type='BlipCaptioner', model_dir=..., ...)``.
        margin: Context added on each side of a box, as a fraction of its size.
        seed: Base sampling seed (image ``k`` uses ``seed + k``).
        shard: ``(index, count)``: process images at positions ``p % count == index``.
        progress: Show a progress bar.
        merge: Instead of processing, merge ``merge`` shard outputs into ``out_file``.

    Returns:
        The run summary (images, objects, kept, dropped by reason, time).
    """
    if merge:
        return merge_shards(out_file, merge)
    images, anns, _ = load_box_json(box_json)
    jobs, _ = make_jobs(images, anns, image_root)
    model = build_captioner(captioner)
    settings = dict(captioner=model.settings, margin=float(margin), seed=int(seed),
                    seed_rule='seed + image_id per image')
    return run_images(TOOL, jobs, out_file, make_process(model, margin, seed), settings,
                      shard=shard, progress=progress)
