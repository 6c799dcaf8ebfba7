"""Panoptic quality (PQ / SQ / RQ) and the thing/stuff query-type split of paper section 4.1."""
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..functional.panoptic import merge_category_stats, panoptic_image_stats, pq_average
from .sample_utils import (as_dict, binary_masks, check_shape, class_lookup, get_field,
                           sample_name, to_tensor)

try:  # the project constant (mmdet's INSTANCE_OFFSET = 1000)
    from mmquerymeld.utils import INSTANCE_OFFSET
except ImportError:  # pragma: no cover - utils always ships with the package
    INSTANCE_OFFSET = 1000

#: ``pred_instances.query_types`` values (mmquerymeld.utils.QUERY_TYPES).
_LEARNABLE, _CONDITIONAL = 0, 1


@METRICS.register_module()
class PanopticQualityMetric(BaseMetric):
    """PQ / SQ / RQ (all, things, stuff) without panopticapi, plus the query-type split.

    Panoptic quality follows Kirillov et al. 2019 and panopticapi's ``pq_compute`` (see
    :mod:`mmquerymeld.evaluation.functional.panoptic`): match when IoU > 0.5; void pixels (those
    covered by no gt segment) leave the union; an unmatched prediction more than half void or
    crowd is no false positive; per-category PQ averaged over the categories present.

    Inputs per sample (docs/data_contract.md), all at ``ori_shape``:

    - ``gt_instances.masks`` ``[N, H, W]`` and ``gt_instances.labels`` ``[N]`` (index into
      ``texts``); optional ``gt_instances.ignore_flags`` / ``iscrowd`` ``[N]`` marks crowd
      segments. Where gt masks overlap, the earlier row wins; pixels in no mask are void.
    - ``pred_panoptic_seg.sem_seg`` ``[1, H, W]`` long: ``label + inst_id * 1000``; a pixel whose
      label equals ``len(texts)`` is void (unassigned). Every other distinct value is a segment.
    - ``pred_instances.query_types`` ``[S]`` (optional): the query type of the kept segments
      (0 learnable, 1 conditional; other values, e.g. -1 unknown, are left out of the split).
      **Segment -> row mapping**, in this order of preference:

      1. ``pred_instances.segment_ids`` ``[S]`` given: row ``r`` is the segment whose pixels hold
         the value ``segment_ids[r]`` (works with mmdet's convention, stuff with inst id 0);
      2. otherwise: the segment whose pixels hold ``label + k * 1000`` with ``k >= 1`` is row
         ``k - 1`` (instance ids 1..S in the order of the rows, things and stuff alike);
         segments with inst id 0 then carry no query type and are left out of the split.

      Samples without ``query_types`` are left out of the split.

    Category identity across images is the category *name* (``texts[label]``, or
    ``dataset_meta['classes'][label]`` when the sample has no texts), so vocabularies may differ
    per sample. Thing / stuff comes from the sample's ``thing_flags`` (per text), else from
    ``dataset_meta['thing_flags']`` (per class of ``dataset_meta['classes']``, as the
    MultiSourceDataset's per-source metainfo has it), else from ``dataset_meta['thing_classes']``
    / ``['stuff_classes']`` (a name in neither list is an error when both are given).

    Query-type split (paper section 4.1): among gt segments matched by a prediction, the share of
    thing segments matched by a conditional query and of stuff segments matched by a learnable
    query.

    Reported (percent): ``PQ SQ RQ PQ_th SQ_th RQ_th PQ_st SQ_st RQ_st``, and
    ``thing_by_conditional`` / ``stuff_by_learnable`` when any matched segment had a query type.

    Args:
        label_divisor: ``INSTANCE_OFFSET`` of the panoptic maps.
        collect_device: See :class:`mmengine.evaluator.BaseMetric`.
        prefix: Key prefix; defaults to ``'panoptic'``.
        collect_dir: See :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = 'panoptic'

    def __init__(self, label_divisor: int = INSTANCE_OFFSET, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.label_divisor = label_divisor

    # ------------------------------------------------------------------ helpers
    def _vocabulary(self, sample: dict) -> List[str]:
        texts = sample.get('texts')
        if texts is None:
            texts = (self.dataset_meta or {}).get('classes')
        if texts is None:
            raise KeyError(f'{type(self).__name__}: sample {sample_name(sample)} has no "texts" '
                           "and dataset_meta has no 'classes'")
        return list(texts)

    def _thing_flags(self, sample: dict, texts: List[str]) -> List[bool]:
        flags = sample.get('thing_flags')
        name = type(self).__name__
        if flags is not None:
            if len(flags) != len(texts):
                raise ValueError(f'{name}: sample {sample_name(sample)}: "thing_flags" has '
                                 f'{len(flags)} entries for {len(texts)} texts')
            return [bool(f) for f in flags]
        meta = self.dataset_meta or {}
        if meta.get('thing_flags') is not None and meta.get('classes') is not None:
            lookup = class_lookup(meta['classes'])  # exact or cleaned ('tree-merged') names
            index = [lookup(t) for t in texts]
            missing = [t for t, i in zip(texts, index) if i is None]
            if missing:
                raise KeyError(f'{name}: sample {sample_name(sample)}: texts {missing[:5]} are not '
                               "in dataset_meta['classes'] (needed for its 'thing_flags')")
            return [bool(meta['thing_flags'][i]) for i in index]
        things, stuff = meta.get('thing_classes'), meta.get('stuff_classes')
        if things is None and stuff is None:
            raise KeyError(f'{name}: sample {sample_name(sample)} has no "thing_flags" and '
                           "dataset_meta has neither 'thing_flags' (with 'classes') nor "
                           "'thing_classes' / 'stuff_classes'")
        things, stuff = list(things or []), list(stuff or [])
        lookup = class_lookup(things + stuff)  # exact or cleaned names
        out = []
        for t in texts:
            i = lookup(t)
            if i is not None:
                out.append(i < len(things))
            elif things and not stuff:  # only thing_classes known: the rest is stuff
                out.append(False)
            elif stuff and not things:  # only stuff_classes known: the rest are things
                out.append(True)
            else:
                raise KeyError(f"{name}: sample {sample_name(sample)}: text '{t}' is in neither "
                               "dataset_meta['thing_classes'] nor ['stuff_classes']")
        return out

    def _segment_rows(self, sample: dict, pred_inst: dict,
                      num_rows: int) -> Callable[[int], Optional[int]]:
        """Return ``value -> row of pred_instances`` for the panoptic map's segment values."""
        name = type(self).__name__
        seg_ids = pred_inst.get('segment_ids')
        if seg_ids is not None:
            seg_ids = to_tensor(seg_ids, sample, 'pred_instances.segment_ids', name).reshape(-1)
            if seg_ids.numel() != num_rows:
                raise ValueError(f'{name}: sample {sample_name(sample)}: pred_instances has '
                                 f'{seg_ids.numel()} segment_ids for {num_rows} query_types')
            lookup = {int(v): r for r, v in enumerate(seg_ids.tolist())}

            def by_segment_id(value: int) -> Optional[int]:
                if value not in lookup:
                    raise ValueError(f'{name}: sample {sample_name(sample)}: panoptic segment '
                                     f'{value} is not in pred_instances.segment_ids')
                return lookup[value]

            return by_segment_id

        def by_instance_id(value: int) -> Optional[int]:
            inst_id = value // self.label_divisor
            if inst_id < 1:
                return None
            if inst_id > num_rows:
                raise ValueError(f'{name}: sample {sample_name(sample)}: panoptic instance id '
                                 f'{inst_id} has no row in pred_instances ({num_rows} rows); '
                                 'instance ids must be 1..S in the order of pred_instances '
                                 '(or give pred_instances.segment_ids)')
            return inst_id - 1

        return by_instance_id

    # ------------------------------------------------------------------ BaseMetric API
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Match each sample's segments; store per-category counts and query-type tallies.

        Args:
            data_batch: The dataloader batch (unused).
            data_samples: Samples (dicts or ``DetDataSample``) with ground truth and predictions.
        """
        name = type(self).__name__
        for raw in data_samples:
            sample = as_dict(raw)
            texts = self._vocabulary(sample)
            flags = self._thing_flags(sample, texts)
            pan = to_tensor(get_field(sample, 'pred_panoptic_seg.sem_seg', name), sample,
                            'pred_panoptic_seg.sem_seg', name).long()
            pan = pan.reshape(pan.shape[-2:]) if pan.dim() == 3 and pan.shape[0] == 1 else pan
            if pan.dim() != 2:
                raise ValueError(f'{name}: sample {sample_name(sample)}: field '
                                 f'"pred_panoptic_seg.sem_seg" must be [1, H, W], got '
                                 f'{tuple(pan.shape)}')
            shape = tuple(sample.get('ori_shape', pan.shape))[:2]
            check_shape(pan, shape, sample, 'pred_panoptic_seg.sem_seg', name)
            gt = get_field(sample, 'gt_instances', name)
            labels = to_tensor(get_field(sample, 'gt_instances.labels', name), sample,
                               'gt_instances.labels', name).long().reshape(-1)
            masks = binary_masks(get_field(sample, 'gt_instances.masks', name), sample,
                                 'gt_instances.masks', name, shape)
            if masks.shape[0] != labels.numel():
                raise ValueError(f'{name}: sample {sample_name(sample)}: gt_instances has '
                                 f'{masks.shape[0]} masks but {labels.numel()} labels')
            if masks.shape[0] == 0:
                masks = torch.zeros((0, ) + shape, dtype=torch.bool)
            crowd = gt.get('ignore_flags', gt.get('iscrowd'))
            crowd = None if crowd is None else to_tensor(crowd, sample, 'gt_instances.ignore_flags',
                                                         name).bool()
            void = len(texts)
            pred_labels = pan % self.label_divisor
            if labels.numel() and (labels.min() < 0 or labels.max() >= void):
                raise ValueError(f'{name}: sample {sample_name(sample)}: gt_instances.labels out '
                                 f'of range [0, {void})')
            if pan.numel() and (pan.min() < 0 or pred_labels.max() > void):
                raise ValueError(f'{name}: sample {sample_name(sample)}: pred_panoptic_seg has '
                                 f'labels outside [0, {void}] (void = len(texts) = {void})')

            stats = panoptic_image_stats(masks, labels, pan, void, crowd, self.label_divisor)
            per_cat = {texts[lbl]: vals for lbl, vals in stats.per_label.items()}
            isthing = {texts[lbl]: flags[lbl] for lbl in stats.per_label}

            # query-type split over matched gt segments (paper section 4.1)
            split = [0, 0, 0, 0]  # things matched, by conditional; stuff matched, by learnable
            pred_inst = sample.get('pred_instances') or {}
            qtypes = pred_inst.get('query_types') if isinstance(pred_inst, dict) else None
            if qtypes is not None:
                qtypes = to_tensor(qtypes, sample, 'pred_instances.query_types', name).reshape(-1)
                row_of = self._segment_rows(sample, pred_inst, qtypes.numel())
                for g, value in stats.matches:
                    row = row_of(value)
                    if row is None:
                        continue
                    qtype = int(qtypes[row])
                    if qtype not in (_LEARNABLE, _CONDITIONAL):
                        continue
                    if flags[int(labels[g])]:
                        split[0] += 1
                        split[1] += int(qtype == _CONDITIONAL)
                    else:
                        split[2] += 1
                        split[3] += int(qtype == _LEARNABLE)
            self.results.append(dict(per_cat=per_cat, isthing=isthing, split=split))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Average the per-category counts into PQ / SQ / RQ (percent).

        Args:
            results: One dict per sample from :meth:`process`.

        Returns:
            The metrics; empty (with a warning) when there were no samples.
        """
        if not results:
            print_log(f'{type(self).__name__}: no samples were evaluated; returning no metrics',
                      logger='current', level=logging.WARNING)
            return {}
        per_cat = merge_category_stats(r['per_cat'] for r in results)
        isthing: Dict[str, bool] = {}
        for r in results:
            for cat, flag in r['isthing'].items():
                if cat in isthing and isthing[cat] != flag:
                    print_log(f"{type(self).__name__}: category '{cat}' is a thing in some "
                              'samples and stuff in others; using the first', logger='current',
                              level=logging.WARNING)
                isthing.setdefault(cat, flag)
        metrics: Dict[str, float] = {}
        for suffix, subset in (('', None), ('_th', True), ('_st', False)):
            avg = pq_average(per_cat, isthing, subset)
            metrics[f'PQ{suffix}'] = round(100 * avg['pq'], 4)
            metrics[f'SQ{suffix}'] = round(100 * avg['sq'], 4)
            metrics[f'RQ{suffix}'] = round(100 * avg['rq'], 4)
        split = [sum(r['split'][k] for r in results) for k in range(4)]
        if split[0]:
            metrics['thing_by_conditional'] = round(100 * split[1] / split[0], 4)
        if split[2]:
            metrics['stuff_by_learnable'] = round(100 * split[3] / split[2], 4)
        lines = [f'{"category":<24} thing    PQ     SQ     RQ   TP  FP  FN']
        for cat, (iou, tp, fp, fn) in sorted(per_cat.items()):
            denom = tp + 0.5 * fp + 0.5 * fn
            lines.append(f'{cat[:24]:<24} {str(isthing[cat]):<5} {100 * iou / denom:6.2f} '
                         f'{100 * iou / tp if tp else 0.0:6.2f} {100 * tp / denom:6.2f} '
                         f'{int(tp):4d}{int(fp):4d}{int(fn):4d}')
        print_log('per-category panoptic quality:\n' + '\n'.join(lines), logger='current')
        return metrics
