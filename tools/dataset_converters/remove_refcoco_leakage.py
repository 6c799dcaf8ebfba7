#!/usr/bin/env python
"""Remove the RefCOCO/+/g evaluation images from COCO / LVIS training annotations, and vice versa.

Appendix A.2 (leakage rule): COCO 2017 train examples that belong to the RefCOCO, RefCOCO+ or
RefCOCOg validation / test sets are excluded; LVIS train likewise; conversely, RefCOCO/+/g train
refs on images of the COCO 2017 val set are excluded. RefCOCO images come from COCO train2014,
whose ids are the COCO 2017 ids, so the match is by image id.

Usage::

    python tools/dataset_converters/remove_refcoco_leakage.py \
        --refs 'data/refcoco/refs(unc).p' 'data/refcoco+/refs(unc).p' 'data/refcocog/refs(umd).p' \
        --train-ann data/coco/annotations/instances_train2017.json \
                    data/coco/annotations/panoptic_train2017.json data/lvis/lvis_v1_train.json \
        --coco-val data/coco/annotations/instances_val2017.json \
        --out-dir data/noleak

Outputs keep the input file names under ``<out-dir>/<parent folder>/``; configs point at them.
Only the standard library is needed (the function is importable from this file).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import pickle
from typing import Dict, Iterable, List, Optional, Sequence, Set

EVAL_SPLITS = ('val', 'testA', 'testB', 'test')


def _load_refs(path: str) -> List[dict]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'refs pickle not found: {path}')
    with open(path, 'rb') as f:
        refs = pickle.load(f)
    if not isinstance(refs, list) or any('image_id' not in r or 'split' not in r for r in refs):
        raise ValueError(f'{path}: expected a list of refs with "image_id" and "split"')
    return refs


def _load_json(path: str) -> dict:
    if not osp.isfile(path):
        raise FileNotFoundError(f'annotation file not found: {path}')
    with open(path) as f:
        data = json.load(f)
    if 'images' not in data:
        raise KeyError(f'{path}: no "images" field')
    return data


def _out_path(out_dir: str, path: str) -> str:
    parent = osp.basename(osp.dirname(osp.abspath(path)))
    return osp.join(out_dir, parent, osp.basename(path))


def heldout_image_ids(refs_files: Iterable[str], eval_splits: Sequence[str] = EVAL_SPLITS
                      ) -> Set[int]:
    """Image ids of every ref in an evaluation split of the given refs pickles."""
    ids: Set[int] = set()
    for path in refs_files:
        ids |= {int(r['image_id']) for r in _load_refs(path) if r['split'] in eval_splits}
    return ids


def remove_refcoco_leakage(refs_files: Sequence[str], train_ann_files: Sequence[str] = (),
                           coco_val_files: Sequence[str] = (), out_dir: Optional[str] = None,
                           eval_splits: Sequence[str] = EVAL_SPLITS,
                           verbose: bool = True) -> Dict[str, dict]:
    """Apply the leakage rule and write cleaned copies.

    Args:
        refs_files: refs pickles of RefCOCO / RefCOCO+ / RefCOCOg (any split_by).
        train_ann_files: COCO-style training JSONs (COCO instances / panoptic, LVIS) from which
            the images of referring evaluation splits are removed, with their annotations.
        coco_val_files: COCO 2017 val JSONs; referring *train* refs on these images are removed.
        out_dir: where cleaned files go (``<out_dir>/<parent folder>/<file name>``); None: only
            report.
        eval_splits: the referring splits that count as evaluation data.
        verbose: print what was removed.

    Returns:
        ``{input path: {'output': path or None, 'removed_images': [...],
        'removed_annotations': n}}`` for JSONs, ``{'removed_refs': [...ref ids...],
        'removed_images': [...]}`` for refs pickles.
    """
    report: Dict[str, dict] = {}
    heldout = heldout_image_ids(refs_files, eval_splits)
    for path in train_ann_files:
        data = _load_json(path)
        drop = sorted({int(i['id']) for i in data['images']} & heldout)
        drop_set = set(drop)
        anns = data.get('annotations', [])
        kept_anns = [a for a in anns if int(a['image_id']) not in drop_set]
        data['images'] = [i for i in data['images'] if int(i['id']) not in drop_set]
        data['annotations'] = kept_anns
        out = None
        if out_dir is not None:
            out = _out_path(out_dir, path)
            os.makedirs(osp.dirname(out), exist_ok=True)
            with open(out, 'w') as f:
                json.dump(data, f)
        report[path] = dict(output=out, removed_images=drop,
                            removed_annotations=len(anns) - len(kept_anns))
        if verbose:
            print(f'[leakage] {path}: removed {len(drop)} images held out by the referring '
                  f'eval splits and {len(anns) - len(kept_anns)} annotations'
                  + (f' -> {out}' if out else '') + (f'; image ids {drop}' if drop else ''))
    val_ids: Set[int] = set()
    for path in coco_val_files:
        val_ids |= {int(i['id']) for i in _load_json(path)['images']}
    if coco_val_files:
        for path in refs_files:
            refs = _load_refs(path)
            bad = [r for r in refs if r['split'] == 'train' and int(r['image_id']) in val_ids]
            bad_ids = {id(r) for r in bad}
            kept = [r for r in refs if id(r) not in bad_ids]
            out = None
            if out_dir is not None:
                out = _out_path(out_dir, path)
                os.makedirs(osp.dirname(out), exist_ok=True)
                with open(out, 'wb') as f:
                    pickle.dump(kept, f, protocol=2)
            removed_imgs = sorted({int(r['image_id']) for r in bad})
            report[path] = dict(output=out, removed_refs=[r.get('ref_id') for r in bad],
                                removed_images=removed_imgs)
            if verbose:
                print(f'[leakage] {path}: removed {len(bad)} train refs on {len(removed_imgs)} '
                      'COCO val images' + (f' -> {out}' if out else '')
                      + (f'; image ids {removed_imgs}' if removed_imgs else ''))
    return report


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--refs', nargs='+', required=True, help='refs(<split_by>).p files')
    parser.add_argument('--train-ann', nargs='*', default=[],
                        help='COCO / LVIS training JSONs to clean')
    parser.add_argument('--coco-val', nargs='*', default=[],
                        help='COCO 2017 val JSONs (cleans referring train refs)')
    parser.add_argument('--out-dir', default=None, help='output root (omit: dry run)')
    parser.add_argument('--eval-splits', nargs='+', default=list(EVAL_SPLITS))
    args = parser.parse_args(argv)
    return remove_refcoco_leakage(args.refs, args.train_ann, args.coco_val, args.out_dir,
                                  args.eval_splits)


if __name__ == '__main__':
    main()
