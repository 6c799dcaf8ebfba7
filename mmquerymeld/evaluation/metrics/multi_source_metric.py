"""One metric (or several) per source dataset of a MultiSourceDataset, plus means over sources."""
import copy
import logging
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement

from .sample_utils import as_dict

MetricSpec = Union[dict, BaseMetric]
#: Result entry of a sample whose image did not decode (``MultiSourceDataset(on_bad_image='skip')``)
SKIPPED = 'skipped'


@METRICS.register_module()
class MultiSourceMetric(BaseMetric):
    """Route each sample to the metric(s) of its source and prefix the results by source.

    Example (in a list: mmengine reads a top-level evaluator dict that has a ``metrics`` key as
    an ``Evaluator`` config, not as a metric)::

        val_evaluator = [dict(
            type='MultiSourceMetric',
            metrics=dict(
                coco_pano=dict(type='PanopticQualityMetric'),
                ade_sem=dict(type='OpenVocabIoUMetric'),
                ade_pano=[dict(type='PanopticQualityMetric'),
                          dict(type='OpenVocabCocoMetric', ann_file='...', metric='segm')],
                seginw_a=dict(type='CocoMetric', ann_file='...', metric='segm'),
                seginw_b=dict(type='CocoMetric', ann_file='...', metric='segm')),
            mean_over=dict(name='seginw_mean_mAP', key='coco/segm_mAP',
                           sources=['seginw_a', 'seginw_b']))]

    - Routing: by the sample's metainfo ``source`` (``source_key``); samples without it use
      ``default_source``; samples of a source with no metric are skipped (one warning).
    - ``dataset_meta``: each sub-metric gets ``dataset_meta['sources'][name]`` (the per-source
      metainfo a ``MultiSourceDataset`` exposes), or the whole ``dataset_meta`` if absent.
    - Keys: ``<source>/<sub-metric prefix>/<key>``, e.g. ``coco_pano/panoptic/PQ``,
      ``seginw_a/coco/segm_mAP``; means over sources are top-level keys named by ``name``.
    - Undecodable images: a sample with the metainfo ``bad_image`` (the placeholder of
      ``MultiSourceDataset(on_bad_image='skip')``) is left out of its source's metrics and
      counted as ``<source>/skipped_images`` (a key present only when an image was skipped).
    - Distributed: the sub-metrics never keep results. For every sample this metric stores
      exactly one ``(source, [items of sub-metric 0, items of sub-metric 1, ...])`` entry in its
      own ``results`` (what the sub-metric's ``process`` appended for that sample), so
      ``BaseMetric.evaluate`` collects, orders and de-pads them across ranks as for any metric;
      :meth:`compute_metrics` then hands each sub-metric its own items.

    Args:
        metrics: ``{source_name: metric config | metric | list of them}``.
        mean_over: Optional dict or list of dicts ``dict(name, key, sources=None)``: the mean of
            ``<source>/<key>`` over ``sources`` (default: every source reporting ``key``).
            Sources without the key are left out with a warning.
        source_key: Metainfo key naming a sample's source.
        default_source: Source of samples without ``source_key`` (None: such a sample raises).
        collect_device: See :class:`mmengine.evaluator.BaseMetric`.
        prefix: Optional prefix of all keys (none by default).
        collect_dir: See :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix: Optional[str] = ''

    def __init__(self, metrics: Dict[str, Union[MetricSpec, Sequence[MetricSpec]]],
                 mean_over: Optional[Union[dict, Sequence[dict]]] = None,
                 source_key: str = 'source', default_source: Optional[str] = None,
                 collect_device: str = 'cpu', prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if not isinstance(metrics, dict) or not metrics:
            raise ValueError('MultiSourceMetric: "metrics" must be a non-empty dict '
                             '{source_name: metric config}')
        self.metrics: Dict[str, List[BaseMetric]] = {}
        for source, specs in metrics.items():
            specs = list(specs) if isinstance(specs, (list, tuple)) else [specs]
            built = []
            for spec in specs:
                metric = METRICS.build(copy.deepcopy(spec)) if isinstance(spec, dict) else spec
                if not isinstance(metric, BaseMetric):
                    raise TypeError(f'MultiSourceMetric: metrics["{source}"] must build a '
                                    f'BaseMetric, got {type(metric).__name__}')
                built.append(metric)
            self.metrics[source] = built
        if mean_over is None:
            mean_over = []
        elif isinstance(mean_over, dict):
            mean_over = [mean_over]
        for spec in mean_over:
            if not isinstance(spec, dict) or 'name' not in spec or 'key' not in spec:
                raise ValueError('MultiSourceMetric: each "mean_over" entry needs "name" and '
                                 f'"key", got {spec!r}')
            unknown = set(spec.get('sources') or []) - set(self.metrics)
            if unknown:
                raise ValueError(f'MultiSourceMetric: mean_over "{spec["name"]}" names sources '
                                 f'{sorted(unknown)} that have no metric')
        self.mean_over: List[dict] = list(mean_over)
        self.source_key = source_key
        self.default_source = default_source
        self._warned_sources: set = set()

    @property
    def dataset_meta(self) -> Optional[dict]:
        """Optional[dict]: Meta info of the (multi-source) dataset."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict) -> None:
        """Set the meta info, and each sub-metric's from ``dataset_meta['sources'][source]``."""
        self._dataset_meta = dataset_meta
        per_source = (dataset_meta or {}).get('sources') or {}
        for source, metrics in self.metrics.items():
            for metric in metrics:
                metric.dataset_meta = per_source.get(source, dataset_meta)

    def _source_of(self, sample: Any) -> str:
        if isinstance(sample, BaseDataElement):
            source = sample.metainfo.get(self.source_key)
        else:
            source = sample.get(self.source_key)
        if source is None:
            source = self.default_source
        if source is None:
            path = sample.get('img_path', '<no img_path>')
            raise KeyError(f'MultiSourceMetric: sample {path} has no metainfo '
                           f'"{self.source_key}" and no default_source is set')
        return source

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Let the sub-metrics of each sample's source process it; keep their items here.

        Args:
            data_batch: The dataloader batch (passed on to the sub-metrics).
            data_samples: Samples (dicts or ``DetDataSample``).
        """
        for sample in data_samples:
            sample = as_dict(sample)  # as mmengine's Evaluator hands it over
            source = self._source_of(sample)
            if sample.get('bad_image'):  # placeholder of an undecodable image (on_bad_image)
                self.results.append((source, SKIPPED))
                continue
            metrics = self.metrics.get(source)
            if metrics is None:
                if source not in self._warned_sources:
                    self._warned_sources.add(source)
                    print_log(f'MultiSourceMetric: no metric for source "{source}"; its samples '
                              'are not evaluated', logger='current', level=logging.WARNING)
                self.results.append((source, None))
                continue
            items = []
            for metric in metrics:
                start = len(metric.results)
                metric.process(data_batch, [sample])
                items.append(metric.results[start:])
                del metric.results[start:]
            self.results.append((source, items))

    def compute_metrics(self, results: list) -> Dict[str, Any]:
        """Compute every source's metrics on its own samples, then the means over sources.

        Args:
            results: One ``(source, items)`` entry per sample.

        Returns:
            ``{'<source>/<prefix>/<key>': value, ..., '<mean name>': value}``.
        """
        grouped: Dict[str, List[list]] = {s: [[] for _ in m] for s, m in self.metrics.items()}
        counts = {s: 0 for s in self.metrics}
        skipped: Dict[str, int] = {}
        for source, items in results:
            if isinstance(items, str) and items == SKIPPED:
                skipped[source] = skipped.get(source, 0) + 1
                continue
            if items is None or source not in grouped:
                continue
            counts[source] += 1
            for k, sub_items in enumerate(items):
                grouped[source][k].extend(sub_items)

        out: Dict[str, Any] = {}
        for source, metrics in self.metrics.items():
            if counts[source] == 0:
                print_log(f'MultiSourceMetric: source "{source}" got no samples; no metrics',
                          logger='current', level=logging.WARNING)
                continue
            for metric, items in zip(metrics, grouped[source]):
                values = metric.compute_metrics(items)
                for key, value in values.items():
                    full = '/'.join(p for p in (source, metric.prefix, key) if p)
                    if full in out:
                        raise KeyError(f'MultiSourceMetric: two metrics of source "{source}" '
                                       f'both report "{full}"; give them different prefixes')
                    out[full] = value

        for source, num in skipped.items():
            out[f'{source}/skipped_images'] = num
            print_log(f'MultiSourceMetric: source "{source}": {num} undecodable images skipped '
                      '(not in its metrics)', logger='current', level=logging.WARNING)

        for spec in self.mean_over:
            sources = spec.get('sources') or list(self.metrics)
            values, missing = [], []
            for source in sources:
                full = f'{source}/{spec["key"]}'
                if full in out:
                    values.append(float(out[full]))
                else:
                    missing.append(source)
            if missing and spec.get('sources'):
                print_log(f'MultiSourceMetric: mean "{spec["name"]}" leaves out sources '
                          f'{missing} (no "{spec["key"]}")', logger='current',
                          level=logging.WARNING)
            if values:
                out[spec['name']] = float(np.mean(values))
            else:
                print_log(f'MultiSourceMetric: mean "{spec["name"]}": no source reported '
                          f'"{spec["key"]}"', logger='current', level=logging.WARNING)
        return out
