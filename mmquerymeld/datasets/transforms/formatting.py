"""``PackQueryMeldInputs``: the training / evaluation sample of ``docs/data_contract.md``."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import BaseBoxes
from mmengine.structures import InstanceData, PixelData

#: metainfo keys of a packed sample (those absent from ``results`` are skipped).
DEFAULT_META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                     'flip_direction', 'pad_shape', 'task', 'texts', 'source', 'thing_flags',
                     'seg_ignore_index')


@TRANSFORMS.register_module()
class PackQueryMeldInputs(PackDetInputs):
    """Pack a sample after :class:`ToUnifiedTargets` into ``inputs`` + ``DetDataSample``.

    ``inputs``: uint8 tensor ``[3, H, W]`` (BGR, as mmdet). ``data_samples.gt_instances``:
    ``masks`` (BitmapMasks ``[N, H, W]``; :class:`BoxOnlyMasks`, without pixels, when no
    instance has a mask), ``bboxes`` (float Tensor ``[N, 4]`` xyxy), ``labels``
    (long ``[N]``, index into ``metainfo['texts']``), ``mask_valid`` (bool ``[N]``).
    ``gt_sem_seg`` (``sem_seg`` long ``[1, H, W]``, metainfo ``ignore_index``) when the pipeline
    kept ``gt_seg_map``. Panoptic evaluation samples with crowd regions also carry
    ``gt_instances.ignore_flags`` (bool ``[N]``, True for crowd rows). Metainfo: task, texts, source, thing_flags and the usual mmdet keys.

    A float image (some colour jitters return float32) is rounded back to uint8.

    Required Keys: img, task, texts, source, gt_bboxes, gt_bboxes_labels, gt_masks,
    gt_mask_valid (training; absent gt keys pack an empty ``gt_instances``).

    Args:
        meta_keys: metainfo keys to copy.
    """

    mapping_table = {
        'gt_bboxes': 'bboxes',
        'gt_bboxes_labels': 'labels',
        'gt_masks': 'masks',
        'gt_mask_valid': 'mask_valid',
        'gt_crowd_flags': 'ignore_flags',
    }

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        super().__init__(meta_keys=tuple(meta_keys))

    def transform(self, results: dict) -> dict:
        for key in ('task', 'texts', 'source'):
            if key not in results:
                raise KeyError(f'PackQueryMeldInputs: {results.get("img_path", "?")} has no '
                               f'"{key}" (run ToUnifiedTargets first)')
        if 'gt_ignore_flags' in results:
            raise KeyError(f'PackQueryMeldInputs: {results.get("img_path", "?")} still has '
                           '"gt_ignore_flags" (run ToUnifiedTargets first)')
        img = results.get('img')
        if img is not None and img.dtype != np.uint8:  # e.g. after a float colour jitter
            results['img'] = np.clip(np.round(img), 0, 255).astype(np.uint8)
        packed = super().transform(results)
        sample: DetDataSample = packed['data_samples']
        gt = sample.gt_instances
        inst = InstanceData(metainfo=gt.metainfo)
        if 'bboxes' in gt:
            boxes = gt.bboxes
            inst.bboxes = (boxes.tensor if isinstance(boxes, BaseBoxes) else
                           torch.as_tensor(boxes)).float().reshape(-1, 4)
            inst.labels = gt.labels.long().reshape(-1)
            if 'masks' in gt:
                inst.masks = gt.masks
            n = len(inst.bboxes)
            inst.mask_valid = gt.mask_valid.bool().reshape(-1) if 'mask_valid' in gt else \
                torch.zeros(n, dtype=torch.bool)
            if 'ignore_flags' in gt:  # crowd rows of panoptic evaluation samples
                inst.ignore_flags = gt.ignore_flags.bool().reshape(-1)
        sample.gt_instances = inst
        if 'gt_seg_map' in results:
            seg = torch.from_numpy(np.asarray(results['gt_seg_map'], dtype=np.int64)[None].copy())
            pix = PixelData(sem_seg=seg)
            pix.set_metainfo(dict(ignore_index=int(results.get('ignore_index', 255))))
            sample.gt_sem_seg = pix
        return packed

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'
