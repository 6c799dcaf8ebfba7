"""The loop every annotation tool shares: per-image jobs, a journal, shards, an atomic output.

A tool (``box2mask``, ``caption_objects``, ``filter_captions``) gives :func:`run_images` a
``process(job, rgb)`` callable; the runner reads each image, calls it, and appends the image's
records to ``<out>.journal`` (one JSON line per finished image, flushed and fsync'ed). A rerun
skips the journaled images, so a killed run resumes where it stopped. When every image of the
shard is journaled, the output JSON is written atomically (:func:`mmquerymeld.utils.atomic.
atomic_write`): a reader sees no file or the whole file, never half. Bad input (a missing or
undecodable image, a box outside its image or of zero area) is counted and logged, never fatal.

Output format: ``{"info": {"tool", "settings", "summary"}, "annotations": [records sorted by
"id"]}``, where ``id`` is the source box id (the key :class:`BoxCaptionDataset` joins on).
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.logging import print_log

from mmquerymeld.utils.atomic import atomic_write

#: ``process(job, rgb_uint8[H, W, 3]) -> (records, dropped counts by reason)``.
ProcessFn = Callable[['ImageJob', np.ndarray], Tuple[List[dict], Dict[str, int]]]

#: Summary keys that are counts (summed by :func:`merge_shards`).
_COUNT_KEYS = ('images', 'images_processed', 'images_resumed', 'objects', 'kept')


@dataclass
class ImageJob:
    """One image and its (valid) source boxes.

    Attributes:
        image_id: ``images[i]['id']`` of the COCO JSON.
        file_name: ``images[i]['file_name']`` as in the JSON.
        path: ``file_name`` joined with the image root.
        width: Image width from the JSON.
        height: Image height from the JSON.
        anns: The image's COCO box annotations that passed :func:`make_jobs`' checks.
        dropped: Boxes of this image removed by :func:`make_jobs`, by reason.
    """
    image_id: int
    file_name: str
    path: str
    width: int
    height: int
    anns: List[dict]
    dropped: Dict[str, int] = field(default_factory=dict)


def load_box_json(path: str) -> Tuple[List[dict], Dict[int, List[dict]], List[dict]]:
    """Read a COCO-format box JSON.

    Args:
        path: The JSON file (``images``, ``annotations``, optional ``categories``).

    Returns:
        ``(images, annotations grouped by image_id, categories)``; images keep the JSON order.

    Raises:
        FileNotFoundError / ValueError / KeyError naming the file and the missing field.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'box JSON not found: {path}')
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f'{path}: not valid JSON ({err})') from err
    if not isinstance(data, dict) or not isinstance(data.get('images'), list):
        raise KeyError(f'{path}: expected a COCO-format dict with an "images" list')
    if not isinstance(data.get('annotations', []), list):
        raise KeyError(f'{path}: "annotations" must be a list')
    for img in data['images']:
        for key in ('id', 'file_name', 'width', 'height'):
            if key not in img:
                raise KeyError(f'{path}: an image lacks "{key}": {str(img)[:120]}')
    by_image: Dict[int, List[dict]] = {int(img['id']): [] for img in data['images']}
    for ann in data.get('annotations', []):
        for key in ('id', 'image_id', 'bbox'):
            if key not in ann:
                raise KeyError(f'{path}: an annotation lacks "{key}": {str(ann)[:120]}')
        by_image.setdefault(int(ann['image_id']), []).append(ann)
    return data['images'], by_image, list(data.get('categories', []))


def box_problem(bbox, width: int, height: int) -> Optional[str]:
    """Why a COCO ``[x, y, w, h]`` box cannot be used, or ``None`` if it can.

    ``'zero_area_box'``: malformed, non-finite, or ``w <= 0`` / ``h <= 0``;
    ``'box_outside_image'``: no overlap of positive area with the ``width x height`` image.
    A box partly outside the image is kept (tools clip it).
    """
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return 'zero_area_box'
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return 'zero_area_box'
    if min(x + w, width) <= max(x, 0.0) or min(y + h, height) <= max(y, 0.0):
        return 'box_outside_image'
    return None


def make_jobs(images: Sequence[dict], anns_by_image: Dict[int, List[dict]],
              image_root: str) -> Tuple[List[ImageJob], Dict[str, int]]:
    """One :class:`ImageJob` per image, with unusable boxes removed and counted.

    Args:
        images: ``images`` of the COCO JSON (the order is kept: it defines the shards).
        anns_by_image: Annotations grouped by ``image_id`` (:func:`load_box_json`).
        image_root: Folder the ``file_name`` entries are relative to.

    Returns:
        ``(jobs, dropped)``: the jobs (each with its own ``dropped`` counts) and the totals.
    """
    jobs, total = [], Counter()
    for img in images:
        w, h = int(img['width']), int(img['height'])
        kept, dropped = [], Counter()
        for ann in anns_by_image.get(int(img['id']), []):
            problem = box_problem(ann.get('bbox'), w, h)
            if problem is None:
                kept.append(ann)
            else:
                dropped[problem] += 1
        total.update(dropped)
        jobs.append(ImageJob(int(img['id']), img['file_name'],
                             osp.join(image_root, img['file_name']), w, h, kept, dict(dropped)))
    return jobs, dict(total)


def read_image(path: str) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """Decode an image as the training loader does (mmcv / cv2), in RGB.

    Returns:
        ``(uint8 [H, W, 3] RGB array, None)``, or ``(None, 'missing_image' | 'corrupt_image')``.
    """
    import mmcv
    if not osp.isfile(path):
        return None, 'missing_image'
    try:
        with open(path, 'rb') as f:
            img = mmcv.imfrombytes(f.read(), flag='color', channel_order='rgb')
    except Exception:  # noqa: BLE001  (any decode failure)
        img = None
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        return None, 'corrupt_image'
    return np.ascontiguousarray(img), None


def shard_path(out_file: str, index: int, count: int) -> str:
    """Output path of shard ``index`` of ``count``: ``a/b.json`` -> ``a/b.shard1of4.json``."""
    if count == 1:
        return out_file
    stem, ext = osp.splitext(out_file)
    return f'{stem}.shard{index}of{count}{ext}'


def parse_shard(spec: Optional[str] = None) -> Tuple[int, int]:
    """``(index, count)`` from ``'i/n'``, else torchrun's ``RANK`` / ``WORLD_SIZE``, else (0, 1)."""
    if spec:
        try:
            index, count = (int(v) for v in spec.split('/'))
        except ValueError:
            raise ValueError(f'--shard must look like i/n (e.g. 0/4), got {spec!r}') from None
    else:
        index, count = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f'shard index must be in [0, {count}), got {index}/{count}')
    return index, count


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        return obj.decode('ascii')
    raise TypeError(f'not JSON serialisable: {type(obj).__name__}')


def _dumps(obj) -> str:
    return json.dumps(obj, default=_json_default, separators=(',', ':'))


def read_journal(path: str) -> Dict[int, dict]:
    """The finished images of a journal, ``{image_id: entry}``; a torn last line is cut off.

    Raises:
        ValueError: a line other than the last is not valid JSON (the journal is corrupt).
    """
    if not osp.isfile(path):
        return {}
    with open(path, 'rb') as f:
        data = f.read()
    entries, good_end, pos = {}, 0, 0
    lines = data.split(b'\n')
    for i, line in enumerate(lines):
        end = pos + len(line) + 1
        if line.strip():
            try:
                entry = json.loads(line)
                complete = end <= len(data)  # a line without its newline is torn
            except ValueError:
                entry, complete = None, False
            if not complete:
                if any(rest.strip() for rest in lines[i + 1:]):
                    raise ValueError(f'{path}: line {i + 1} is not valid JSON; the journal is '
                                     'corrupt (delete it to start over)')
                print_log(f'{path}: ignoring a torn last line ({len(line)} bytes)',
                          logger='current', level=30)
                break
            if isinstance(entry, dict) and 'image_id' in entry:
                entries[int(entry['image_id'])] = entry
        good_end = min(end, len(data))
        pos = end
    if good_end < len(data):
        with open(path, 'r+b') as f:
            f.truncate(good_end)
    return entries


def _check_header(journal: str, tool: str, settings: dict) -> None:
    """A journal written with another tool or other settings cannot be resumed."""
    with open(journal, 'r', encoding='utf-8') as f:
        first = f.readline()
    try:
        head = json.loads(first)
    except ValueError:
        return  # torn header: nothing journaled yet
    if 'header' not in head:
        return
    old = head['header']
    mine = json.loads(_dumps(dict(tool=tool, settings=settings)))
    if old != mine:
        keys = sorted(k for k in set(old.get('settings', {})) | set(mine['settings'])
                      if old.get('settings', {}).get(k) != mine['settings'].get(k))
        raise ValueError(f'{journal} was written by {old.get("tool")} with other settings '
                         f'(differing: {keys or "tool"}); rerun with the same settings or delete '
                         'the journal to start over')


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from mmengine.utils import ProgressBar
    return ProgressBar(total)


def _summarise(tool: str, entries: Sequence[dict], jobs: Sequence[ImageJob], processed: int,
               seconds: float) -> dict:
    dropped, failed = Counter(), Counter()
    kept = 0
    for e in entries:
        kept += len(e['records'])
        dropped.update(e.get('dropped', {}))
        if e.get('failed'):
            failed[e['failed']] += 1
    objects = sum(len(j.anns) + sum(j.dropped.values()) for j in jobs)
    return dict(tool=tool, images=len(jobs), images_processed=processed,
                images_resumed=len(entries) - processed, images_failed=dict(sorted(failed.items())),
                objects=objects, kept=kept, dropped=dict(sorted(dropped.items())),
                seconds=round(seconds, 3),
                images_per_second=round(processed / seconds, 4) if seconds > 0 else 0.0)


def _output(tool: str, settings: dict, summary: dict, records: List[dict]) -> str:
    records = sorted(records, key=lambda r: r['id'])
    return _dumps(dict(info=dict(tool=tool, settings=settings, summary=summary),
                       annotations=records)) + '\n'


def log_summary(summary: dict) -> None:
    """One log line: images, objects, kept, dropped by reason, time and rate."""
    print_log(f'{summary["tool"]} summary: images={summary["images"]} '
              f'(processed {summary["images_processed"]}, resumed {summary["images_resumed"]}, '
              f'failed {summary["images_failed"]}) objects={summary["objects"]} '
              f'kept={summary["kept"]} dropped={summary["dropped"]} '
              f'seconds={summary["seconds"]} images/s={summary["images_per_second"]}',
              logger='current')


def run_images(tool: str, jobs: Sequence[ImageJob], out_file: str, process: ProcessFn,
               settings: dict, shard: Tuple[int, int] = (0, 1), progress: bool = True) -> dict:
    """Run ``process`` on every image of this shard that the journal lacks; write the output.

    Args:
        tool: Tool name, recorded in the output and the journal header.
        jobs: All images (:func:`make_jobs`); shard ``(i, n)`` takes positions ``p % n == i``.
        out_file: Output JSON (a shard writes :func:`shard_path` of it).
        process: ``process(job, rgb uint8 [H, W, 3]) -> (records, dropped counts)``; records are
            dicts with ``'id'`` = the source box id. Not called for images without boxes.
        settings: JSON-serialisable settings that determine the output (checked on resume).
        shard: ``(index, count)``.
        progress: Show a progress bar (rate and ETA).

    Returns:
        The summary (also logged and stored in the output's ``info``).
    """
    index, count = shard
    out = shard_path(out_file, index, count)
    journal = out + '.journal'
    mine = [j for p, j in enumerate(jobs) if p % count == index]
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    if osp.isfile(journal):
        _check_header(journal, tool, settings)
    done = read_journal(journal)
    todo = [j for j in mine if j.image_id not in done]
    if done:
        print_log(f'{tool}: resuming from {journal}: {len(mine) - len(todo)} of {len(mine)} '
                  f'images already done, {len(todo)} to process', logger='current')
    t0 = time.time()
    bar = _progress(len(todo), progress)
    with open(journal, 'a', encoding='utf-8') as jf:
        if jf.tell() == 0:
            jf.write(_dumps(dict(header=dict(tool=tool, settings=settings))) + '\n')
        for job in todo:
            records, dropped, failed = [], Counter(job.dropped), None
            if job.anns:
                rgb, failed = read_image(job.path)
                if failed:
                    print_log(f'{tool}: {failed.replace("_", " ")} {job.path} (image '
                              f'{job.image_id}, {len(job.anns)} boxes dropped)',
                              logger='current', level=30)
                    dropped[failed] += len(job.anns)
                else:
                    records, more = process(job, rgb)
                    dropped.update(more)
            entry = dict(image_id=job.image_id, records=records, dropped=dict(dropped),
                         failed=failed)
            jf.write(_dumps(entry) + '\n')
            jf.flush()
            os.fsync(jf.fileno())
            done[job.image_id] = json.loads(_dumps(entry))
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.file.write('\n')
    entries = [done[j.image_id] for j in mine]
    summary = _summarise(tool, entries, mine, len(todo), time.time() - t0)
    records = [r for e in entries for r in e['records']]
    atomic_write(out, _output(tool, json.loads(_dumps(settings)), summary, records))
    log_summary(summary)
    print_log(f'{tool}: wrote {len(records)} records to {out}', logger='current')
    return summary


def merge_shards(out_file: str, count: int) -> dict:
    """Join the ``count`` shard outputs of ``out_file`` into ``out_file`` (atomically).

    The annotations equal those of one process over all images; the summary's counts are summed
    (``seconds`` too: total compute time). Raises ``FileNotFoundError`` naming a missing shard and
    ``ValueError`` if the shards were written by different tools or settings.
    """
    infos, records = [], []
    for i in range(count):
        path = shard_path(out_file, i, count)
        if not osp.isfile(path):
            raise FileNotFoundError(f'shard {i} of {count} is missing: {path} (run the tool with '
                                    f'--shard {i}/{count} first)')
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
        infos.append(data['info'])
        records += data['annotations']
    first = infos[0]
    for i, info in enumerate(infos[1:], 1):
        if (info['tool'], info['settings']) != (first['tool'], first['settings']):
            raise ValueError(f'{shard_path(out_file, i, count)}: written by {info["tool"]} with '
                             f'other settings than shard 0; cannot merge')
    summary = dict(tool=first['tool'])
    for key in _COUNT_KEYS:
        summary[key] = sum(info['summary'][key] for info in infos)
    for key in ('images_failed', 'dropped'):
        total = Counter()
        for info in infos:
            total.update(info['summary'][key])
        summary[key] = dict(sorted(total.items()))
    summary['seconds'] = round(sum(info['summary']['seconds'] for info in infos), 3)
    summary['images_per_second'] = (round(summary['images_processed'] / summary['seconds'], 4)
                                    if summary['seconds'] > 0 else 0.0)
    ids = [r['id'] for r in records]
    if len(ids) != len(set(ids)):
        raise ValueError(f'{out_file}: shards of {count} share record ids; were they made from '
                         'the same box JSON?')
    # key order as run_images writes it
    summary = {k: summary[k] for k in ('tool', 'images', 'images_processed', 'images_resumed',
                                       'images_failed', 'objects', 'kept', 'dropped', 'seconds',
                                       'images_per_second')}
    atomic_write(out_file, _output(first['tool'], first['settings'], summary, records))
    log_summary(summary)
    print_log(f'merged {count} shards into {out_file} ({len(records)} records)', logger='current')
    return summary


def add_input_args(parser, out_help: str) -> None:
    """The positional ``box_json`` / ``image_root`` and the required ``--out`` of every tool."""
    parser.add_argument('box_json', help='COCO-format box JSON (images + annotations with bbox)')
    parser.add_argument('image_root', help="folder the images' file_name entries are relative to")
    parser.add_argument('--out', required=True, help=out_help)


def add_runner_args(parser) -> None:
    """The CLI options every annotation tool shares: ``--shard``, ``--merge``, ``--no-progress``."""
    parser.add_argument('--shard', default=None, metavar='I/N',
                        help='process shard I of N (images at positions p %% N == I); default: '
                             "torchrun's RANK/WORLD_SIZE, else 0/1")
    parser.add_argument('--merge', type=int, default=None, metavar='N',
                        help='do not process: join the N shard outputs of --out into --out')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
