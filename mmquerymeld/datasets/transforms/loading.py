"""Loading transforms for every format QueryMeldNet trains on (paper section 3.3).

* :class:`SafeLoadImageFromFile`: an unreadable image is skipped (``None``, so the dataset refetches
  another index, bounded by its ``max_refetch``) and counted with a warning.
* :class:`LoadCocoPanopticAnnotations`: COCO panoptic PNG + JSON without panopticapi.
* :class:`LoadQMAnnotations`: COCO-style instances (polygons, RLE, box-only, referring texts).
* :class:`LoadSemSegAnnotations`: 8-bit and 16-bit label maps (``reduce_zero_label``), and binary
  foreground masks.
* :class:`SetSourceInfo`: tags a sample with its source name, task and source metainfo
  (:class:`~mmquerymeld.datasets.MultiSourceDataset` prepends it to every source pipeline).

The instance table
------------------
Some instances carry more than a class label: referring expressions, synthetic captions, or the
fact that they have no mask. mmdet's geometric transforms filter instances by indexing
``gt_bboxes`` / ``gt_bboxes_labels`` / ``gt_masks`` / ``gt_ignore_flags`` and drop any other
per-instance key. So, when such extras exist, :class:`LoadQMAnnotations` stores them in
``results['gt_instance_table']`` (one dict per loaded instance: ``label``, ``texts``,
``mask_valid``) and sets ``gt_bboxes_labels`` to the *row index* into that table; filtering keeps
rows and labels aligned, and :class:`ToUnifiedTargets` resolves the rows. Transforms that mix
several images (Mosaic, MixUp, CopyPaste) must not be used with such sources.
"""
from __future__ import annotations

import io
from typing import List, Optional

import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmdet.datasets.transforms import LoadAnnotations as MMDetLoadAnnotations
from mmdet.datasets.transforms import LoadPanopticAnnotations as MMDetLoadPanopticAnnotations
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine import fileio
from mmengine.logging import print_log
from PIL import Image

from ...utils import TASKS
from ..utils import (IGNORE_INDEX_8BIT, IGNORE_INDEX_16BIT, rgb2id, sanitize_segmentation,
                     segmentation_to_mask)
from .box_only_masks import BoxOnlyMasks


@TRANSFORMS.register_module()
class SafeLoadImageFromFile(MMCVLoadImageFromFile):
    """``LoadImageFromFile`` that skips unreadable images instead of crashing the run.

    A missing, truncated or undecodable image makes :meth:`transform` return ``None``; the
    dataset (mmengine ``BaseDataset``) then refetches a random index, at most ``max_refetch``
    times. Every skip is counted (per process, :attr:`num_skipped`) and logged as a warning.

    Required Keys: img_path. Added Keys: img, img_shape, ori_shape.
    """

    #: images skipped by every instance of this transform in this process.
    num_skipped: int = 0

    def transform(self, results: dict) -> Optional[dict]:
        try:
            out = super().transform(results)
        except Exception as err:  # noqa: BLE001  (any read/decode failure)
            out, reason = None, f'{type(err).__name__}: {err}'
        else:
            reason = 'empty file' if out is None else ''
        if out is None:
            SafeLoadImageFromFile.num_skipped += 1
            print_log(
                f'SafeLoadImageFromFile: skipped unreadable image {results.get("img_path")} '
                f'({reason}); {SafeLoadImageFromFile.num_skipped} skipped so far',
                logger='current', level=30)
        return out


@TRANSFORMS.register_module()
class LoadCocoPanopticAnnotations(MMDetLoadPanopticAnnotations):
    """mmdet's ``LoadPanopticAnnotations`` decoding the PNG itself (no panopticapi needed).

    Output follows mmdet: ``gt_masks`` holds one mask per non-crowd thing segment (aligned with
    ``gt_bboxes`` / ``gt_bboxes_labels`` from ``instances``), ``gt_seg_map`` the category of every
    segment (things and stuff, 255 = void). :class:`ToUnifiedTargets` turns the stuff classes of
    ``gt_seg_map`` into one mask per present stuff class.

    With ``with_crowd`` (evaluation pipelines only: no transform moves these keys) the crowd
    segments (``segments_info[i]['iscrowd']``, set by :class:`QMCocoPanopticDataset`) are kept
    too, as ``gt_crowd_masks`` (uint8 ``[C, H, W]``) and ``gt_crowd_labels`` (int64 ``[C]``):
    panopticapi's PQ does not count predictions on a crowd region of their class as false
    positives, and does not treat crowd pixels as void.

    Required Keys: seg_map_path, segments_info, instances, ori_shape.
    Added Keys: gt_bboxes, gt_bboxes_labels, gt_ignore_flags, gt_masks, gt_seg_map, ignore_index,
    gt_crowd_masks and gt_crowd_labels (``with_crowd``).
    """

    def __init__(self, with_bbox: bool = True, with_label: bool = True, with_mask: bool = True,
                 with_seg: bool = True, box_type: str = 'hbox', imdecode_backend: str = 'cv2',
                 backend_args: Optional[dict] = None, with_crowd: bool = False) -> None:
        MMDetLoadAnnotations.__init__(
            self, with_bbox=with_bbox, with_label=with_label, with_mask=with_mask,
            with_seg=with_seg, with_keypoints=False, box_type=box_type,
            imdecode_backend=imdecode_backend, backend_args=backend_args)
        self.rgb2id = rgb2id
        self.with_crowd = with_crowd

    def _load_masks_and_semantic_segs(self, results: dict) -> None:
        path = results.get('seg_map_path')
        if path is None:
            return
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'panoptic annotation PNG not found: {path}') from err
        png = np.array(Image.open(io.BytesIO(data)).convert('RGB'))
        ids = self.rgb2id(png)
        h, w = ids.shape
        gt_seg = np.full((h, w), IGNORE_INDEX_8BIT, dtype=np.uint8)
        thing_masks: List[np.ndarray] = []
        crowd_masks: List[np.ndarray] = []
        crowd_labels: List[int] = []
        for seg in results['segments_info']:
            mask = ids == seg['id']
            if seg['category'] >= IGNORE_INDEX_8BIT:
                raise ValueError(f'{path}: category {seg["category"]} does not fit the uint8 '
                                 'semantic map (at most 255 panoptic classes)')
            gt_seg[mask] = seg['category']
            if seg.get('is_thing'):
                thing_masks.append(mask.astype(np.uint8))
            elif seg.get('iscrowd'):
                crowd_masks.append(mask.astype(np.uint8))
                crowd_labels.append(int(seg['category']))
        if self.with_crowd:
            results['gt_crowd_masks'] = np.stack(crowd_masks) if crowd_masks else \
                np.zeros((0, h, w), dtype=np.uint8)
            results['gt_crowd_labels'] = np.asarray(crowd_labels, dtype=np.int64)
        if self.with_mask:
            results['gt_masks'] = BitmapMasks(thing_masks, h, w) if thing_masks else \
                BitmapMasks(np.zeros((0, h, w), dtype=np.uint8), h, w)
        if self.with_seg:
            results['gt_seg_map'] = gt_seg
            results['ignore_index'] = IGNORE_INDEX_8BIT


@TRANSFORMS.register_module()
class LoadQMAnnotations(MMDetLoadAnnotations):
    """Instance annotations of COCO / LVIS / RefCOCO / box-only detection data.

    Compared with mmdet's ``LoadAnnotations``: invalid polygon parts are dropped, an instance
    whose segmentation is invalid or rasterises to nothing is dropped (box and label too),
    instances without a ``mask`` key are kept as box-only (``mask_valid`` False; an image with no
    mask at all gets :class:`BoxOnlyMasks`, which holds no pixels; a mixed image all-zero rows),
    and referring texts / captions (``instance['texts']``) survive augmentation through the
    instance table (see the module docstring).

    Required Keys: instances (bbox, bbox_label, ignore_flag, optional mask / texts), ori_shape.
    Added Keys: gt_bboxes, gt_bboxes_labels, gt_ignore_flags, gt_masks (with_mask),
    gt_instance_table (when instances carry texts or lack masks).

    Args:
        with_bbox: load boxes.
        with_label: load labels.
        with_mask: rasterise masks (always to ``BitmapMasks``).
        always_table: use the instance table even when no instance needs it.
        **kwargs: other mmdet ``LoadAnnotations`` arguments.
    """

    def __init__(self, with_bbox: bool = True, with_label: bool = True, with_mask: bool = True,
                 always_table: bool = False, **kwargs) -> None:
        kwargs.setdefault('with_seg', False)
        kwargs.pop('poly2mask', None)  # masks are always rasterised
        super().__init__(with_bbox=with_bbox, with_label=with_label, with_mask=with_mask,
                         poly2mask=True, **kwargs)
        self.always_table = always_table

    def transform(self, results: dict) -> dict:
        instances = results.get('instances', [])
        h, w = results['ori_shape']
        boxes, labels, ignores, masks, rows = [], [], [], [], []
        needs_table = self.always_table
        for inst in instances:
            mask_valid = False
            mask = None
            if self.with_mask and inst.get('mask') is not None:
                seg = sanitize_segmentation(inst['mask'])
                if seg is None:
                    continue  # invalid polygons only: the instance is dropped
                mask = segmentation_to_mask(seg, h, w)
                if not mask.any():
                    continue  # zero-area mask: dropped
                mask_valid = True
            if self.with_mask and not mask_valid:
                needs_table = True
            if inst.get('texts') is not None:
                needs_table = True
            boxes.append(inst['bbox'])
            labels.append(inst.get('bbox_label', 0))
            ignores.append(bool(inst.get('ignore_flag', 0)))
            masks.append(mask)
            rows.append(dict(label=int(inst.get('bbox_label', -1)),
                             texts=list(inst['texts']) if inst.get('texts') else None,
                             mask_valid=mask_valid))
        n = len(boxes)
        if self.with_bbox:
            results['gt_bboxes'] = HorizontalBoxes(
                np.asarray(boxes, dtype=np.float32).reshape(n, 4))
            results['gt_ignore_flags'] = np.asarray(ignores, dtype=bool)
        if self.with_label:
            results['gt_bboxes_labels'] = np.arange(n, dtype=np.int64) if needs_table else \
                np.asarray(labels, dtype=np.int64)
        if needs_table:
            results['gt_instance_table'] = rows
        if self.with_mask and n and all(m is None for m in masks):
            # box-only image: a placeholder without pixels (its boxes are all it costs)
            results['gt_masks'] = BoxOnlyMasks(n, h, w)
        elif self.with_mask:
            stack = np.zeros((n, h, w), dtype=np.uint8)
            for i, m in enumerate(masks):
                if m is not None:
                    stack[i] = m
            results['gt_masks'] = BitmapMasks(stack, h, w)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(with_bbox={self.with_bbox}, '
                f'with_label={self.with_label}, with_mask={self.with_mask}, '
                f'always_table={self.always_table})')


@TRANSFORMS.register_module()
class LoadSemSegAnnotations(BaseTransform):
    """Semantic label maps of any bit depth, and binary foreground masks.

    mmseg's ``LoadAnnotations`` casts every map to uint8, which corrupts label spaces with more
    than 255 classes (Pascal Context 459). Here 8-bit maps stay uint8 (ignore 255) and 16-bit
    maps stay uint16 (ignore 65535). ``reduce_zero_label`` follows mmseg (0 becomes ignore, the
    rest shift down by one); a dataset's ``results['reduce_zero_label']`` / ``label_map`` (mmseg
    data infos) take precedence over the argument.

    Required Keys: seg_map_path. Added Keys: gt_seg_map, ignore_index, seg_fields.

    Args:
        reduce_zero_label: shift labels down by one, 0 becomes ignore.
        binarize: foreground masks: ``gt_seg_map = (value >= threshold)`` in {0, 1}.
        threshold: binarisation threshold on the raw values (masks are 0/255 PNGs).
        backend_args: mmengine file backend arguments.
    """

    def __init__(self, reduce_zero_label: Optional[bool] = None, binarize: bool = False,
                 threshold: int = 128, backend_args: Optional[dict] = None) -> None:
        self.reduce_zero_label = reduce_zero_label
        self.binarize = binarize
        self.threshold = threshold
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results.get('seg_map_path')
        if path is None:
            raise KeyError(f'LoadSemSegAnnotations: sample {results.get("img_path")} has no '
                           '"seg_map_path"')
        try:
            data = fileio.get(path, backend_args=self.backend_args)
        except FileNotFoundError as err:
            raise FileNotFoundError(f'label map not found: {path}') from err
        img = Image.open(io.BytesIO(data))
        seg = np.array(img)
        if seg.ndim == 3:
            if self.binarize:
                seg = seg[..., :3].max(axis=2) if seg.shape[2] >= 3 else seg[..., 0]
            else:
                raise ValueError(f'{path}: expected a single-channel label map, got mode '
                                 f'{img.mode} with shape {seg.shape}')
        if self.binarize:
            gt = (seg >= self.threshold).astype(np.uint8)
            ignore = IGNORE_INDEX_8BIT
        else:
            if seg.dtype == np.uint8 or seg.dtype == bool:
                seg = seg.astype(np.uint8)
                ignore = IGNORE_INDEX_8BIT
            else:
                if seg.min() < 0 or seg.max() > IGNORE_INDEX_16BIT:
                    raise ValueError(f'{path}: label values outside [0, 65535]')
                seg = seg.astype(np.uint16)
                ignore = IGNORE_INDEX_16BIT
            gt = seg.copy()
            reduce_zero = results.get('reduce_zero_label', self.reduce_zero_label)
            if reduce_zero is None:
                reduce_zero = False
            if self.reduce_zero_label is not None and 'reduce_zero_label' in results and \
                    bool(results['reduce_zero_label']) != bool(self.reduce_zero_label):
                raise ValueError(
                    f'{path}: reduce_zero_label={self.reduce_zero_label} in the pipeline '
                    f'disagrees with the dataset\'s {results["reduce_zero_label"]}')
            # mmseg's order: reduce the zero label first, then apply the dataset's label_map
            # (whose keys index the reduced classes, BaseSegDataset.get_label_map)
            if reduce_zero:
                zero = gt == 0
                keep = gt == ignore
                gt = gt - 1
                gt[zero | keep] = ignore
            label_map = results.get('label_map')
            if label_map:
                mapped = gt.copy()
                for old, new in label_map.items():
                    mapped[gt == old] = new if new != IGNORE_INDEX_8BIT else ignore
                gt = mapped
        results['gt_seg_map'] = gt
        results['ignore_index'] = ignore
        results.setdefault('seg_fields', [])
        if 'gt_seg_map' not in results['seg_fields']:
            results['seg_fields'].append('gt_seg_map')
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(reduce_zero_label={self.reduce_zero_label}, '
                f'binarize={self.binarize}, threshold={self.threshold})')


@TRANSFORMS.register_module()
class SetSourceInfo(BaseTransform):
    """Tag a sample with the source it comes from (first transform of every source pipeline).

    Added Keys: task, source, source_meta (the source's metainfo: classes, thing_flags, ...).

    Args:
        source: source name (as in ``MultiSourceDataset``).
        task: one of ``mmquerymeld.utils.TASKS``.
        metainfo: the source dataset's metainfo (classes, thing_flags, ignore_index, ...).
    """

    def __init__(self, source: str, task: str, metainfo: Optional[dict] = None) -> None:
        if task not in TASKS:
            raise ValueError(f'source {source!r}: task {task!r} is not one of {TASKS}')
        self.source = source
        self.task = task
        self.metainfo = dict(metainfo or {})

    def transform(self, results: dict) -> dict:
        results['source'] = self.source
        results['task'] = self.task
        results['source_meta'] = self.metainfo
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(source={self.source!r}, task={self.task!r})'
