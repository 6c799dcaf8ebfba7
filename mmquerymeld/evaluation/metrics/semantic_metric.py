"""Semantic segmentation mIoU: mmseg's IoUMetric adapted to the project's samples."""
import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import METRICS
from mmengine.logging import print_log
from mmseg.evaluation.metrics import IoUMetric

from .sample_utils import (as_dict, check_shape, class_lookup, get_field, same_vocabulary,
                           sample_name, text_to_class_index, to_tensor)


@METRICS.register_module()
class OpenVocabIoUMetric(IoUMetric):
    """mmseg's :class:`IoUMetric` (aAcc, mIoU, mAcc ...) on open-vocabulary samples.

    mmseg's metric reads ``pred_sem_seg.data``; the project's samples (docs/data_contract.md)
    carry ``pred_sem_seg.sem_seg`` ``[1, H, W]`` (index into the sample's ``texts``) and
    ``gt_sem_seg.sem_seg`` ``[1, H, W]`` (ignore 255), mmdet style. The class space of the
    metric is ``dataset_meta['classes']``. When a sample's ``texts`` differ from the classes
    (sampled or reordered vocabulary), predicted labels are translated by name; ground truth is
    translated too when ``gt_label_space='texts'``. Predictions outside the vocabulary
    (e.g. a void label ``len(texts)``) count as wrong for the gt class and belong to no class.

    ``mIoU_th`` / ``mIoU_st`` (paper Table 2's thing / stuff split, issue 11): the mean IoU over
    the thing classes and over the stuff classes, reported when thing / stuff is known, from (in
    this order) the ``thing_classes`` argument, ``dataset_meta['thing_flags']`` (per class) or
    ``dataset_meta['thing_classes']`` (the rest is stuff).

    Args:
        gt_label_space: ``'classes'`` if ``gt_sem_seg`` indexes ``dataset_meta['classes']``
            (mmseg loaders), ``'texts'`` if it indexes the sample's ``texts``.
        **kwargs: Arguments of :class:`mmseg.evaluation.IoUMetric` (``ignore_index``,
            ``iou_metrics``, ``nan_to_num``, ``prefix`` ...). ``output_dir`` / ``format_only``
            are supported as in mmseg.
        thing_classes: Names of the thing classes (the other classes are stuff), for
            ``mIoU_th`` / ``mIoU_st``; ``None`` reads them from ``dataset_meta``.
    """

    default_prefix: Optional[str] = 'semantic'

    def __init__(self, gt_label_space: str = 'classes',
                 thing_classes: Optional[Sequence[str]] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thing_classes = None if thing_classes is None else [str(c) for c in thing_classes]
        if gt_label_space not in ('classes', 'texts'):
            raise ValueError(f"OpenVocabIoUMetric: gt_label_space must be 'classes' or 'texts', "
                             f'got {gt_label_space!r}')
        self.gt_label_space = gt_label_space

    def _to_classes(self, label: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        """Translate text indices to class indices; others (ignore, void) pass through as -1 /
        ``ignore_index``."""
        out = torch.full_like(label, -1)
        inside = (label >= 0) & (label < lut.numel())
        out[inside] = lut[label[inside]]
        out[label == self.ignore_index] = self.ignore_index
        return out

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Convert each sample to mmseg's layout and let :class:`IoUMetric` accumulate it.

        Args:
            data_batch: The dataloader batch.
            data_samples: Samples (dicts or ``DetDataSample``).
        """
        name = type(self).__name__
        classes = (self.dataset_meta or {}).get('classes')
        if classes is None:
            raise KeyError(f"{name}: dataset_meta has no 'classes'")
        converted = []
        for raw in data_samples:
            sample = as_dict(raw)
            pred = to_tensor(get_field(sample, 'pred_sem_seg.sem_seg', name), sample,
                             'pred_sem_seg.sem_seg', name).long()
            item = dict(img_path=sample.get('img_path', sample_name(sample)),
                        reduce_zero_label=sample.get('reduce_zero_label', False))
            texts = sample.get('texts')
            lut = None
            if not same_vocabulary(texts, classes):
                lut = text_to_class_index(texts, classes, sample, name)
                pred = self._to_classes(pred, lut)
            if not self.format_only:
                gt = to_tensor(get_field(sample, 'gt_sem_seg.sem_seg', name), sample,
                               'gt_sem_seg.sem_seg', name).long()
                check_shape(pred, gt.shape[-2:], sample, 'pred_sem_seg.sem_seg', name)
                if lut is not None and self.gt_label_space == 'texts':
                    gt = self._to_classes(gt, lut)
                item['gt_sem_seg'] = dict(data=gt)
            item['pred_sem_seg'] = dict(data=pred)
            converted.append(item)
        super().process(data_batch, converted)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """mmseg's computation; an empty dict (with a warning) when there were no samples."""
        if not results and not self.format_only:
            print_log(f'{type(self).__name__}: no samples were evaluated; returning no metrics',
                      logger='current', level=logging.WARNING)
            return {}
        metrics = super().compute_metrics(results)
        flags = None if self.format_only else self._class_thing_flags()
        if flags is None:
            return metrics
        # per-class IoU as mmseg computes it (intersection / union summed over the samples)
        inter = sum(r[0] for r in results).double()
        union = sum(r[1] for r in results).double()
        iou = (inter / union).cpu().numpy()  # NaN for a class absent from gt and prediction
        flags = np.asarray(flags, dtype=bool)
        for key, subset in (('mIoU_th', flags), ('mIoU_st', ~flags)):
            vals = iou[subset]
            if subset.any() and not np.isnan(vals).all():
                metrics[key] = float(np.round(np.nanmean(vals) * 100, 2))
        return metrics

    def _class_thing_flags(self) -> Optional[List[bool]]:
        """Thing (True) / stuff (False) per class of ``dataset_meta['classes']``, or ``None``.

        Raises:
            KeyError: If a name of ``thing_classes`` is not a class of the dataset.
        """
        meta = self.dataset_meta or {}
        classes = list(meta.get('classes') or [])
        if not classes:
            return None
        things = self.thing_classes
        if things is None and meta.get('thing_flags') is not None:
            flags = [bool(f) for f in meta['thing_flags']]
            if len(flags) != len(classes):
                raise ValueError(f"{type(self).__name__}: dataset_meta['thing_flags'] has "
                                 f'{len(flags)} entries for {len(classes)} classes')
            return flags
        if things is None:
            things = meta.get('thing_classes')
        if things is None:
            return None
        lookup = class_lookup(classes)
        index = [lookup(t) for t in things]
        missing = [t for t, i in zip(things, index) if i is None]
        if missing:
            raise KeyError(f'{type(self).__name__}: thing_classes {missing[:5]} are not in '
                           "dataset_meta['classes']")
        flags = [False] * len(classes)
        for i in index:
            flags[i] = True
        return flags
