"""Instance segmentation / detection AP: mmdet's CocoMetric on open-vocabulary samples."""
import logging
from typing import Any, Dict, Optional, Sequence

import numpy as np
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.logging import print_log

from .sample_utils import (as_dict, class_lookup, get_field, same_vocabulary,
                           text_to_class_index, to_tensor)


@METRICS.register_module()
class OpenVocabCocoMetric(CocoMetric):
    """mmdet's :class:`CocoMetric` whose predicted labels may index the sample's ``texts``.

    mmdet's metric maps ``pred_instances.labels`` through ``dataset_meta['classes']`` to COCO
    category ids. The project's predictions index the sample's vocabulary ``texts``; when that
    differs from ``dataset_meta['classes']`` (sampled or reordered), labels are translated by
    name before mmdet's processing. COCO category ids are looked up by name in the order of
    ``dataset_meta['classes']`` (mmdet takes the json's category order). With ``texts ==
    classes`` and a json listing categories in class order it behaves exactly as ``CocoMetric``.
    No samples: an empty dict with a warning. All arguments are those of
    :class:`mmdet.evaluation.CocoMetric` (``ann_file``, ``metric=['bbox', 'segm']`` ...); the
    default prefix stays ``'coco'``.
    """

    default_prefix: Optional[str] = 'coco'

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Translate labels to class indices, then process as :class:`CocoMetric`.

        Args:
            data_batch: The dataloader batch.
            data_samples: Samples (dicts or ``DetDataSample``).
        """
        name = type(self).__name__
        classes = (self.dataset_meta or {}).get('classes')
        converted = []
        for raw in data_samples:
            sample = as_dict(raw)
            texts = sample.get('texts')
            if not same_vocabulary(texts, classes):
                pred = dict(get_field(sample, 'pred_instances', name))
                labels = to_tensor(get_field(sample, 'pred_instances.labels', name), sample,
                                   'pred_instances.labels', name).long()
                pred['labels'] = text_to_class_index(texts, classes, sample, name)[labels]
                sample = dict(sample, pred_instances=pred)
            converted.append(sample)
        super().process(data_batch, converted)

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """mmdet's computation; an empty dict (with a warning) when there were no samples."""
        if not results:
            print_log(f'{type(self).__name__}: no samples were evaluated; returning no metrics',
                      logger='current', level=logging.WARNING)
            return {}
        if self._coco_api is not None:
            results = self._restrict_to_ann_file(results)
        return super().compute_metrics(results)

    def _restrict_to_ann_file(self, results: list) -> list:
        """Set ``cat_ids`` by name and drop predictions of classes ``ann_file`` lacks.

        Category ids are looked up by name (exact, or the prompt text of the class name) in the
        order of ``dataset_meta['classes']``: mmdet's ``get_cat_ids`` returns them in the json's
        order, which need not match. Classes absent from ``ann_file`` (the stuff classes of a
        panoptic source scored with ``instances_*.json``, as mmdet's panoptic recipes do) are
        not evaluated: their predictions are dropped and the other labels renumbered.

        Args:
            results: ``(gt, pred)`` pairs from :meth:`process`.

        Returns:
            The pairs with predictions restricted to the classes of ``ann_file``.
        """
        name = type(self).__name__
        classes = (self.dataset_meta or {}).get('classes')
        if classes is None:
            raise KeyError(f"{name}: dataset_meta has no 'classes'")
        cats = list(self._coco_api.cats.values())
        lookup = class_lookup([cat['name'] for cat in cats])
        cat_of = [lookup(c) for c in classes]
        present = [i for i, c in enumerate(cat_of) if c is not None]
        if not present:
            raise KeyError(f"{name}: none of dataset_meta['classes'] ({list(classes)[:5]} ...) "
                           'is a category of ann_file')
        missing = [c for c, k in zip(classes, cat_of) if k is None]
        if missing:
            print_log(f'{name}: {len(missing)} classes are not categories of ann_file and are '
                      f'not evaluated (their predictions are dropped): {missing[:5]} ...',
                      logger='current', level=logging.WARNING)
        self.cat_ids = [cats[cat_of[i]]['id'] for i in present]
        new_label = np.full(len(classes), -1, dtype=np.int64)
        new_label[present] = np.arange(len(present))
        out = []
        for gt, pred in results:
            labels = np.asarray(pred['labels'], dtype=np.int64)
            if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
                raise ValueError(f'{name}: image {gt.get("img_id")}: predicted labels outside '
                                 f"[0, {len(classes)}) (dataset_meta['classes'])")
            keep = new_label[labels] >= 0 if len(labels) else np.zeros(0, dtype=bool)
            pred = dict(pred)
            for key in ('bboxes', 'scores', 'mask_scores'):
                if key in pred:
                    pred[key] = np.asarray(pred[key])[keep]
            if 'masks' in pred:
                pred['masks'] = [m for m, k in zip(pred['masks'], keep) if k]
            pred['labels'] = new_label[labels[keep]]
            out.append((gt, pred))
        return out
