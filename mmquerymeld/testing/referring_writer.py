"""RefCOCO / RefCOCO+ / RefCOCOg: ``refs(<split_by>).p`` pickles and ``instances.json``.

Referring val/test refs use the val images only, so the world has no leakage by construction.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
from typing import Dict, List, Tuple

from .file_io import IdCounter, dump_json
from .language import unique_sentences
from .scenes import Scene

#: dataset folder -> (sentence style, split_by -> evaluation splits), as the public releases.
REFERRING_SPECS: Dict[str, Tuple[str, Dict[str, Tuple[str, ...]]]] = {
    'refcoco': ('refcoco', {'unc': ('val', 'testA', 'testB')}),
    'refcoco+': ('refcoco+', {'unc': ('val', 'testA', 'testB')}),
    'refcocog': ('refcocog', {'umd': ('val', 'test'), 'google': ('val', )}),
}


def write_referring(root: str, scenes: Dict[str, List[Scene]],
                    per_split_anns: Dict[str, List[List[dict]]], instances: dict) -> None:
    """Write the three referring datasets.

    Args:
        root: world root.
        scenes: ``'train'`` / ``'val'`` -> the COCO-like scenes.
        per_split_anns: split -> per image, the COCO annotations of its things, each with the
            ``_thing`` index into ``scene.things``.
        instances: the ``instances.json`` content (train2014 file names, polygon masks).
    """
    sent_id = IdCounter(0)
    for dname, (style, split_bys) in REFERRING_SPECS.items():
        dump_json(instances, osp.join(root, dname, 'instances.json'))
        for split_by, eval_splits in split_bys.items():
            refs = []
            ref_id = 0
            sent_id.value = 0
            for split in ('train', 'val'):
                for k, (img_anns, scene) in enumerate(zip(per_split_anns[split], scenes[split])):
                    # val gets about half of the eval images, the test splits share the rest
                    cycle = [eval_splits[0]] * max(1, len(eval_splits) - 1) + \
                        list(eval_splits[1:])
                    ref_split = 'train' if split == 'train' else cycle[k % len(cycle)]
                    unique = unique_sentences(scene, style)
                    for ann in img_anns:
                        sents = unique[ann['_thing']]
                        sentences = []
                        for s in sents:
                            sid = sent_id()
                            sentences.append(dict(tokens=s.split(), raw=s, sent_id=sid, sent=s))
                        refs.append(dict(
                            sent_ids=[x['sent_id'] for x in sentences],
                            file_name=f'COCO_train2014_{ann["image_id"]:012d}_{ann["id"]}.jpg',
                            ann_id=ann['id'], ref_id=ref_id, image_id=ann['image_id'],
                            split=ref_split, sentences=sentences,
                            category_id=ann['category_id']))
                        ref_id += 1
            os.makedirs(osp.join(root, dname), exist_ok=True)
            with open(osp.join(root, dname, f'refs({split_by}).p'), 'wb') as f:
                pickle.dump(refs, f, protocol=2)
