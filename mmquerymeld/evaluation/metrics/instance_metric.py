"""Instance segmentation / detection AP: mmdet's CocoMetric on open-vocabulary samples."""
import logging
from typing import Any, Dict, Optional, Sequence

from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.logging import print_log

from .sample_utils import (as_dict, get_field, same_vocabulary, text_to_class_index,
                           to_tensor)


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
        if self.cat_ids is None and self._coco_api is not None:
            # category ids by name, in the order of dataset_meta['classes'] (mmdet's
            # get_cat_ids returns them in the json's order, which need not match)
            classes = (self.dataset_meta or {}).get('classes')
            if classes is None:
                raise KeyError(f"{type(self).__name__}: dataset_meta has no 'classes'")
            name_to_id = {cat['name']: cat['id'] for cat in self._coco_api.cats.values()}
            missing = [c for c in classes if c not in name_to_id]
            if missing:
                raise KeyError(f'{type(self).__name__}: classes {missing[:5]} are not categories '
                               f'of ann_file')
            self.cat_ids = [name_to_id[c] for c in classes]
        return super().compute_metrics(results)
