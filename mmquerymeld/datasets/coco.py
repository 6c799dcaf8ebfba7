"""COCO-format instance datasets: COCO / LVIS instances JSON (polygons and RLE).

mmdet's ``CocoDataset`` parses the JSON; these subclasses add what multi-source training needs:
classes read from the JSON when the config gives none (``METAINFO`` is empty), invalid polygons
and zero-area annotations dropped and counted, empty images kept or filtered by ``filter_cfg``
after that cleaning, and a clear error naming a missing annotation file. LVIS needs no ``lvis``
package: its JSON is COCO-compatible apart from ``coco_url`` file names.
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import List

from mmdet.datasets import CocoDataset, CocoPanopticDataset
from mmdet.datasets.api_wrappers import COCOPanoptic
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

from .utils import require_file, sanitize_segmentation


@DATASETS.register_module()
class QMCocoDataset(CocoDataset):
    """COCO instances JSON (polygons and RLE) with cleaning and JSON-defined classes.

    Args:
        require_masks: drop annotations without a ``segmentation`` (instance segmentation data);
            when False they are kept as box-only instances (``mask_valid=False`` downstream).
        **kwargs: ``CocoDataset`` arguments (``ann_file``, ``data_prefix=dict(img=...)``,
            ``filter_cfg=dict(filter_empty_gt=..., min_size=...)``, ``metainfo`` ...).
    """

    METAINFO: dict = {}

    def __init__(self, *args, require_masks: bool = True, **kwargs) -> None:
        self.require_masks = require_masks
        self.require_texts = False
        self.num_dropped = 0
        super().__init__(*args, **kwargs)

    def _categories_from_json(self) -> None:
        """Fill ``classes`` (and ``thing_flags``) from the JSON categories, sorted by id."""
        if self._metainfo.get('classes'):
            return
        cats = sorted(self.coco.dataset.get('categories', []), key=lambda c: c['id'])
        if not cats:
            raise ValueError(f'{self.ann_file}: no "categories" and no metainfo classes given')
        self._metainfo['classes'] = tuple(c['name'] for c in cats)

    def load_data_list(self) -> List[dict]:
        """Parse the JSON with pycocotools; classes follow ``metainfo['classes']`` order."""
        require_file(self.ann_file, 'annotation file', type(self).__name__)
        self.num_dropped = 0
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            self.coco = self.COCOAPI(local_path)
        self._prepare_raw(self.coco)
        self._categories_from_json()
        name_to_id = {c['name']: c['id'] for c in self.coco.dataset.get('categories', [])}
        missing = [n for n in self._metainfo['classes'] if n not in name_to_id]
        if missing:
            raise KeyError(f'{self.ann_file}: "categories" has no entry named {missing[:5]} '
                           f'(metainfo classes)')
        self.cat_ids = [name_to_id[n] for n in self._metainfo['classes']]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)
        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = dict(self.coco.load_imgs([img_id])[0], img_id=img_id)
            raw_ann_info = self.coco.load_anns(self.coco.get_ann_ids(img_ids=[img_id]))
            data_list.append(self.parse_data_info(
                dict(raw_img_info=raw_img_info, raw_ann_info=raw_ann_info)))
        del self.coco
        if self.num_dropped:
            print_log(f'{type(self).__name__}: dropped {self.num_dropped} annotations (zero area, '
                      'invalid segmentation, outside the image or the classes) from '
                      f'{self.ann_file}', logger='current', level=30)
        return data_list

    def _prepare_raw(self, coco) -> None:
        """Hook to adapt the raw JSON before parsing (LVIS file names)."""

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """One image: ``instances`` with bbox (xyxy), bbox_label, ignore_flag, ann_id and,
        when valid, ``mask`` (polygons / RLE) and ``texts`` (referring texts, captions)."""
        img_info = raw_data_info['raw_img_info']
        width, height = img_info['width'], img_info['height']
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                continue
            if ann.get('category_id') not in self.cat2label or len(ann.get('bbox', [])) != 4:
                self.num_dropped += 1
                continue
            x1, y1, w, h = ann['bbox']
            inter_w = max(0, min(x1 + w, width) - max(x1, 0))
            inter_h = max(0, min(y1 + h, height) - max(y1, 0))
            if inter_w * inter_h <= 0 or w < 1 or h < 1 or ann.get('area', w * h) <= 0:
                self.num_dropped += 1
                continue
            inst = dict(bbox=[x1, y1, x1 + w, y1 + h],
                        bbox_label=self.cat2label[ann['category_id']],
                        ignore_flag=int(bool(ann.get('iscrowd', False))), ann_id=ann.get('id'))
            seg = ann.get('segmentation')
            if seg:
                clean = sanitize_segmentation(seg)
                if clean is None:
                    self.num_dropped += 1
                    continue
                inst['mask'] = clean
            elif self.require_masks:
                self.num_dropped += 1
                continue
            if ann.get('texts'):
                inst['texts'] = [str(t) for t in ann['texts']]
            elif self.require_texts:
                self.num_dropped += 1
                continue
            instances.append(inst)
        return dict(img_path=osp.join(self.data_prefix.get('img', '') or '',
                                      img_info['file_name']),
                    img_id=img_info['img_id'], seg_map_path=None, height=height, width=width,
                    instances=instances)

    def filter_data(self) -> List[dict]:
        """``filter_empty_gt`` on the instances left after cleaning; ``min_size`` as mmdet."""
        if self.test_mode or self.filter_cfg is None:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        out = []
        for info in self.data_list:
            if filter_empty_gt and not any(not i.get('ignore_flag', 0)
                                           for i in info['instances']):
                continue
            if min(info['width'], info['height']) >= min_size:
                out.append(info)
        return out


@DATASETS.register_module()
class QMLVISDataset(QMCocoDataset):
    """LVIS v1 instances JSON without the ``lvis`` package.

    File names come from ``coco_url`` (``train2017/000000000139.jpg``, so ``data_prefix.img`` is
    the COCO root). Each data info also keeps LVIS's federated lists as class indices:
    ``neg_labels`` (verified absent) and ``not_exhaustive_labels``.
    """

    ANN_ID_UNIQUE = True

    def _prepare_raw(self, coco) -> None:
        for img in coco.dataset.get('images', []):
            if 'file_name' not in img:
                if 'coco_url' not in img:
                    raise KeyError(f'{self.ann_file}: image {img.get("id")} has neither '
                                   '"file_name" nor "coco_url"')
                img['file_name'] = osp.join(*img['coco_url'].rsplit('/', 2)[-2:])
        coco.imgs = {img['id']: img for img in coco.dataset.get('images', [])}

    def parse_data_info(self, raw_data_info: dict) -> dict:
        data_info = super().parse_data_info(raw_data_info)
        img = raw_data_info['raw_img_info']
        data_info['neg_labels'] = [self.cat2label[c] for c in img.get('neg_category_ids', [])
                                   if c in self.cat2label]
        data_info['not_exhaustive_labels'] = [
            self.cat2label[c] for c in img.get('not_exhaustive_category_ids', [])
            if c in self.cat2label]
        return data_info



@DATASETS.register_module()
class QMCocoPanopticDataset(CocoPanopticDataset):
    """COCO panoptic JSON + PNG folder (read with :class:`LoadCocoPanopticAnnotations`).

    Without ``metainfo`` the classes come from the JSON: ``thing_classes`` (``isthing=1``) then
    ``stuff_classes``, each sorted by category id; ``classes = thing_classes + stuff_classes``.
    Segments of unknown categories are dropped (their pixels become void).
    """

    METAINFO: dict = {}

    def load_data_list(self) -> List[dict]:
        require_file(self.ann_file, 'panoptic annotation file', type(self).__name__)
        with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
            self.coco = COCOPanoptic(local_path)
        cats = sorted(self.coco.dataset.get('categories', []), key=lambda c: c['id'])
        if not self._metainfo.get('thing_classes'):
            if not cats:
                raise ValueError(f'{self.ann_file}: no "categories" and no metainfo classes')
            self._metainfo['thing_classes'] = tuple(c['name'] for c in cats if c['isthing'])
            self._metainfo['stuff_classes'] = tuple(c['name'] for c in cats if not c['isthing'])
        classes = tuple(self._metainfo['thing_classes']) + tuple(self._metainfo['stuff_classes'])
        self._metainfo['classes'] = classes
        name_to_id = {c['name']: c['id'] for c in cats}
        missing = [n for n in classes if n not in name_to_id]
        if missing:
            raise KeyError(f'{self.ann_file}: "categories" has no entry named {missing[:5]}')
        self.cat_ids = [name_to_id[n] for n in classes]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)
        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = dict(self.coco.load_imgs([img_id])[0], img_id=img_id)
            segs = [s for s in self.coco.imgToAnns.get(img_id, [])
                    if s['category_id'] in self.cat2label]
            data_list.append(self.parse_data_info(
                dict(raw_img_info=raw_img_info, raw_ann_info=segs)))
        del self.coco
        return data_list

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """mmdet's parsing, plus ``iscrowd`` on every entry of ``segments_info``.

        mmdet turns a crowd thing segment into ``is_thing=False`` without an instance, so
        nothing downstream could tell it from stuff; panopticapi's PQ needs the crowd regions
        (``LoadCocoPanopticAnnotations(with_crowd=True)`` reads them).
        """
        info = super().parse_data_info(raw_data_info)
        crowd = {a['id'] for a in raw_data_info['raw_ann_info'] if a.get('iscrowd', 0)}
        for seg in info['segments_info']:
            seg['iscrowd'] = seg['id'] in crowd
        return info
