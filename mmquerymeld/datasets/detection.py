"""Box-only detection data (Objects365 / Visual Genome style) joined with synthetic data.

Paper section 3.4: a box-prompted segmenter gives *synthetic masks* for detection boxes, and an
object captioner gives *five synthetic captions per box*, one sampled per iteration. Both come as
side files keyed by the annotation id of the box JSON.
"""
from __future__ import annotations

import os.path as osp
from typing import Dict, List, Optional

from mmdet.registry import DATASETS
from mmengine import load

from .coco import QMCocoDataset
from .utils import require_file


def _records(obj, path: str, field: str) -> Dict[int, object]:
    """``{annotation id: obj[field]}`` from ``{"annotations": [...]}``, a list, or a dict."""
    if isinstance(obj, dict) and 'annotations' in obj:
        obj = obj['annotations']
    if isinstance(obj, dict):
        return {int(k): v for k, v in obj.items()}
    if not isinstance(obj, list):
        raise ValueError(f'{path}: expected {{"annotations": [...]}}, a list or a dict')
    out = {}
    for rec in obj:
        if 'id' not in rec or field not in rec:
            raise KeyError(f'{path}: a record lacks "id" or "{field}": {str(rec)[:120]}')
        out[int(rec['id'])] = rec[field]
    return out


@DATASETS.register_module()
class BoxCaptionDataset(QMCocoDataset):
    """COCO-format box-only JSON, optionally joined with synthetic masks and captions.

    Instances without a synthetic mask stay box-only (``mask_valid=False`` after
    :class:`ToUnifiedTargets`); instances with captions carry them as ``texts`` (a source with
    ``task='referring'`` then samples one caption per instance per iteration).

    Args:
        syn_mask_file: JSON of synthetic masks: ``{"annotations": [{"id": ann_id,
            "segmentation": RLE or polygons}, ...]}`` (relative to ``data_root``).
        caption_file: JSON of synthetic captions: ``{"annotations": [{"id": ann_id,
            "captions": [str, ...]}, ...]}`` (relative to ``data_root``).
        require_captions: with ``caption_file``, drop boxes that have no caption.
        **kwargs: :class:`QMCocoDataset` arguments (``require_masks`` is forced to False).
    """

    def __init__(self, *args, syn_mask_file: Optional[str] = None,
                 caption_file: Optional[str] = None, require_captions: bool = True,
                 **kwargs) -> None:
        self.syn_mask_file = syn_mask_file
        self.caption_file = caption_file
        self.require_captions = require_captions
        kwargs['require_masks'] = False
        super().__init__(*args, **kwargs)
        self.require_texts = bool(caption_file) and require_captions

    def _join_prefix(self) -> None:
        super()._join_prefix()
        for attr in ('syn_mask_file', 'caption_file'):
            path = getattr(self, attr)
            if path and self.data_root and not osp.isabs(path) and '://' not in path:
                setattr(self, attr, osp.join(self.data_root, path))

    def load_data_list(self) -> List[dict]:
        self.require_texts = bool(self.caption_file) and self.require_captions
        self._masks: Dict[int, object] = {}
        self._captions: Dict[int, object] = {}
        if self.syn_mask_file:
            require_file(self.syn_mask_file, 'synthetic-mask file', type(self).__name__)
            self._masks = _records(load(self.syn_mask_file), self.syn_mask_file,
                                   'segmentation')
        if self.caption_file:
            require_file(self.caption_file, 'synthetic-caption file', type(self).__name__)
            self._captions = _records(load(self.caption_file), self.caption_file, 'captions')
        try:
            return super().load_data_list()
        finally:
            del self._masks, self._captions

    def _prepare_raw(self, coco) -> None:
        for ann in coco.dataset.get('annotations', []):
            ann.pop('segmentation', None)  # box-only data: masks come from the side file only
            seg = self._masks.get(ann.get('id'))
            if seg is not None:
                ann['segmentation'] = seg
            caps = self._captions.get(ann.get('id'))
            if caps:
                ann['texts'] = list(caps)
