"""Open-vocabulary inference on images with any texts.

    python tools/infer.py CONFIG CHECKPOINT IMG [IMG ...] --texts "red circle" sky \
        --task semantic --out-dir outputs/
    python tools/infer.py ... --task panoptic --texts circle square sky --thing-flags 1 1 0
    python tools/infer.py ... --task referring --texts "the red circle on the left"
    python tools/infer.py ... --half                 # fp16 autocast on CUDA, bf16 on the CPU
    python tools/infer.py ... --text-cache-dir ~/.cache/mmquerymeld/text   # text embeddings on disk

Writes one overlay per image (<out-dir>/<image name>.png; <image name>_<k>.png when names clash
or the name is one of the input images) and <out-dir>/results.json with a summary of each
prediction (its "overlay" names the picture).
"""
import argparse
import json
import os
import os.path as osp
from typing import Any, Dict, List

import torch

from mmquerymeld.apis import QueryMeldInferencer
from mmquerymeld.models.text.disk_cache import ENV_VAR
from mmquerymeld.utils.atomic import atomic_write
from mmquerymeld.utils.constants import TASKS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='QueryMeldNet open-vocabulary inference')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--texts', nargs='+', required=True,
                        help='the vocabulary: class names or referring expressions')
    parser.add_argument('--task', default='semantic', choices=TASKS)
    parser.add_argument('--thing-flags', nargs='+', type=int, choices=(0, 1),
                        help='panoptic: 1 (thing) or 0 (stuff) per text')
    parser.add_argument('--out-dir', default='outputs')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='instances drawn and listed above this score')
    parser.add_argument('--img-scale', nargs=2, type=int, metavar=('W', 'H'),
                        help="resize scale (default: the config's infer_img_scale)")
    parser.add_argument('--half', action='store_true',
                        help='half precision: fp16 autocast on CUDA, bf16 autocast on the CPU '
                        '(deformable attention and text encoding stay fp32)')
    parser.add_argument('--text-cache-dir',
                        help='on-disk text-embedding cache folder (sets MMQM_TEXT_CACHE_DIR): a '
                        'later call with the same texts skips the text encoder')
    return parser.parse_args()


def summarize(sample, texts: List[str], task: str, score_thr: float) -> Dict[str, Any]:
    """A JSON-friendly summary of one prediction."""
    out: Dict[str, Any] = dict(image=sample.metainfo.get('img_path', ''), task=task, texts=texts)
    if task in ('semantic', 'foreground'):
        seg = sample.pred_sem_seg.sem_seg[0]
        names = ['background'] + texts if task == 'foreground' else texts
        ids, counts = seg.unique(return_counts=True)
        out['pixels_per_text'] = {names[int(i)]: int(c) for i, c in zip(ids, counts)}
    elif task == 'panoptic':
        pred = sample.pred_instances
        out['segments'] = [
            dict(text=texts[int(label)], score=float(score), area=int(mask.sum()),
                 query_type=int(qt))
            for label, score, mask, qt in zip(pred.labels, pred.scores, pred.masks,
                                              pred.query_types)]
    else:
        pred = sample.pred_instances
        keep = pred.scores >= score_thr if task != 'referring' else pred.scores >= -1
        out['instances'] = [
            dict(text=texts[int(label)], score=float(score),
                 bbox=[round(float(v), 1) for v in box], query_type=int(qt))
            for label, score, box, qt in zip(pred.labels[keep], pred.scores[keep],
                                             pred.bboxes[keep], pred.query_types[keep])]
    return out


def overlay_paths(images: List[str], out_dir: str) -> List[str]:
    """One overlay file per image: ``<out_dir>/<image stem>.png``, made unique.

    Images with the same stem (``a/img.png``, ``b/img.jpg``) get ``_1``, ``_2`` ... suffixes
    instead of overwriting each other, and an overlay never replaces one of the input images
    (``--out-dir`` may be the images' own folder).
    """
    inputs = {osp.abspath(image) for image in images}
    taken = set()
    paths = []
    for image in images:
        stem = osp.splitext(osp.basename(image))[0]
        path, k = osp.join(out_dir, stem + '.png'), 0
        while osp.abspath(path) in taken or osp.abspath(path) in inputs:
            k += 1
            path = osp.join(out_dir, f'{stem}_{k}.png')
        taken.add(osp.abspath(path))
        paths.append(path)
    return paths


def main() -> None:
    args = parse_args()
    flags = None if args.thing_flags is None else [bool(f) for f in args.thing_flags]
    if args.text_cache_dir:
        os.environ[ENV_VAR] = args.text_cache_dir  # read by every OpenCLIPTextEncoder built below
    inferencer = QueryMeldInferencer(args.config, args.checkpoint, device=args.device,
                                     img_scale=tuple(args.img_scale) if args.img_scale else None,
                                     half=args.half)
    os.makedirs(args.out_dir, exist_ok=True)
    summaries = []
    for image, out_file in zip(args.images, overlay_paths(args.images, args.out_dir)):
        [sample] = inferencer(image, texts=args.texts, task=args.task, thing_flags=flags)
        sample = sample.cpu()
        inferencer.draw(image, sample, out_file, score_thr=args.score_thr)
        summary = summarize(sample, list(args.texts), args.task, args.score_thr)
        summary['overlay'] = out_file
        summaries.append(summary)
        print(f'{image} -> {out_file}')
    atomic_write(osp.join(args.out_dir, 'results.json'), json.dumps(summaries, indent=2))
    print(f'summary: {osp.join(args.out_dir, "results.json")}')


if __name__ == '__main__':
    main()
