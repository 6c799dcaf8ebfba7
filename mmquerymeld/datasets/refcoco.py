"""RefCOCO / RefCOCO+ / RefCOCOg: ``refs(<split_by>).p`` pickle + ``instances.json``.

Splits follow the refer toolkit's files: ``unc`` (refcoco, refcoco+: train / val / testA /
testB), ``umd`` (refcocog: train / val / test) and ``google`` (refcocog: train / val). One data
info per image gathers every ref of the split on it; each instance keeps *all* its sentences as
``texts`` so that :class:`ToUnifiedTargets` samples one per mask per iteration (mmdet's
``RefCocoDataset`` samples once, at load time). With ``expand_sentences`` (default in test mode)
every sentence becomes its own instance, as referring evaluation scores each sentence.
"""
from __future__ import annotations

import os.path as osp
from collections import defaultdict
from typing import List, Optional

from mmdet.registry import DATASETS
from mmengine import load
from mmengine.dataset import BaseDataset

from .utils import require_file

SPLITS_BY = {'unc': ('train', 'val', 'testA', 'testB'), 'umd': ('train', 'val', 'test'),
             'google': ('train', 'val'), 'berkeley': ('train', 'val', 'test')}


@DATASETS.register_module()
class QMRefCocoDataset(BaseDataset):
    """Referring segmentation from the refer toolkit's files.

    Args:
        ann_file: ``instances.json`` (COCO format, relative to ``data_root``).
        split_file: the refs pickle; default ``refs(<split_by>).p`` next to ``ann_file``.
        split_by: ``unc``, ``umd``, ``google`` (or ``berkeley``).
        split: ``train``, ``val``, ``testA``, ``testB`` or ``test``.
        data_prefix: ``dict(img_path=...)``: the COCO train2014 image folder.
        expand_sentences: one instance per sentence (default: ``test_mode``).
        **kwargs: mmengine ``BaseDataset`` arguments.
    """

    METAINFO: dict = {'classes': None}

    def __init__(self, ann_file: str, split: str = 'train', split_by: str = 'unc',
                 split_file: Optional[str] = None, data_prefix: Optional[dict] = None,
                 expand_sentences: Optional[bool] = None, **kwargs) -> None:
        if split_by not in SPLITS_BY:
            raise ValueError(f'split_by must be one of {list(SPLITS_BY)}, got {split_by!r}')
        if split not in SPLITS_BY[split_by]:
            raise ValueError(f'split {split!r} does not exist in the {split_by!r} splits '
                             f'{SPLITS_BY[split_by]}')
        self.split, self.split_by = split, split_by
        self.split_file = split_file
        self.expand_sentences = expand_sentences
        super().__init__(ann_file=ann_file, data_prefix=data_prefix or dict(img_path=''),
                         **kwargs)
        self._metainfo.update(split=split, split_by=split_by)

    def _join_prefix(self) -> None:
        super()._join_prefix()
        if self.split_file is None:
            self.split_file = osp.join(osp.dirname(self.ann_file), f'refs({self.split_by}).p')
        elif self.data_root and not osp.isabs(self.split_file) and '://' not in self.split_file:
            self.split_file = osp.join(self.data_root, self.split_file)

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'referring instances file', type(self).__name__)
        require_file(self.split_file, 'refs pickle', type(self).__name__)
        refs = load(self.split_file, file_format='pkl')
        coco = load(self.ann_file, file_format='json')
        anns = {a['id']: a for a in coco.get('annotations', [])}
        imgs = {i['id']: i for i in coco.get('images', [])}
        cats = sorted(c['id'] for c in coco.get('categories', []))
        cat2label = {c: i for i, c in enumerate(cats)}
        expand = self.test_mode if self.expand_sentences is None else self.expand_sentences
        by_image = defaultdict(list)
        for ref in refs:
            if ref.get('split') != self.split:
                continue
            for key in ('ann_id', 'image_id', 'sentences', 'ref_id'):
                if key not in ref:
                    raise KeyError(f'{self.split_file}: a ref lacks "{key}"')
            by_image[ref['image_id']].append(ref)
        data_list = []
        for img_id in sorted(by_image):
            if img_id not in imgs:
                raise KeyError(f'{self.ann_file}: no image {img_id} (referenced by '
                               f'{self.split_file})')
            img = imgs[img_id]
            instances = []
            for ref in by_image[img_id]:
                if ref['ann_id'] not in anns:
                    raise KeyError(f'{self.ann_file}: no annotation {ref["ann_id"]} '
                                   f'(ref {ref["ref_id"]} of {self.split_file})')
                ann = anns[ref['ann_id']]
                sents = [str(s.get('sent') or s.get('raw', '')).strip()
                         for s in ref['sentences']]
                sents = [s for s in sents if s]
                if not sents:
                    continue
                x, y, w, h = ann['bbox']
                base = dict(bbox=[x, y, x + w, y + h],
                            bbox_label=cat2label.get(ann.get('category_id'), 0),
                            ignore_flag=0, mask=ann.get('segmentation'), ref_id=ref['ref_id'],
                            ann_id=ref['ann_id'])
                if expand:
                    instances.extend(dict(base, texts=[s]) for s in sents)
                else:
                    instances.append(dict(base, texts=sents))
            data_list.append(dict(
                img_path=osp.join(self.data_prefix.get('img_path', ''), img['file_name']),
                img_id=img_id, height=img['height'], width=img['width'],
                instances=instances))
        if not data_list:
            raise ValueError(f'{self.split_file}: no ref in split {self.split!r}')
        return data_list
