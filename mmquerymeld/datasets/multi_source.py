"""``MultiSourceDataset``: many datasets and tasks trained together (paper section 3.3, A.2).

Each source is a dataset config, its own pipeline (dataset-aware augmentation, as LMSeg), a task,
a sampling ratio (appendix A.2, Table 11) and a name. Sources keep their own metainfo: nothing
forces a common label space, since every label becomes text.
"""
from __future__ import annotations

import copy
import json
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from mmdet.datasets import ConcatDataset
from mmdet.registry import DATASETS, TRANSFORMS
from mmengine import DefaultScope
from mmengine.dataset import BaseDataset, Compose
from mmengine.logging import print_log
from PIL import Image

from ..utils import TASKS
from .transforms.loading import SafeLoadImageFromFile, SetSourceInfo
from .utils import require_dir, require_file, split_thing_stuff

_SOURCE_KEYS = {'dataset', 'pipeline', 'task', 'ratio', 'name'}
ON_BAD_IMAGE = ('raise', 'skip')


def _build_transforms(pipeline: Sequence[Union[dict, Any]]) -> List[Any]:
    """Build transform configs in mmdet's registry (``mmseg.`` / ``mmcv.`` prefixes work)."""
    out = []
    for t in pipeline:
        out.append(TRANSFORMS.build(copy.deepcopy(t)) if isinstance(t, dict) else t)
    return out


@DATASETS.register_module()
class MultiSourceDataset(ConcatDataset):
    """Concatenation of heterogeneous sources, each with its own pipeline, task and ratio.

    Indices are those of mmengine's ``ConcatDataset`` (source 0 first). Every sample passes
    through ``SetSourceInfo(name, task, source metainfo)`` and then the source's pipeline, so it
    carries ``task``, ``source`` and the source's classes.

    ``metainfo`` is ``{'sources': {name: {**source metainfo, 'task', 'ratio', 'thing_flags'
    (when known)}}, 'source_names': [...], 'tasks': [...], 'ratios': [...]}``.

    Args:
        sources: list of dicts with keys ``dataset`` (config or built dataset), ``pipeline``
            (list of transform configs; the dataset's own ``pipeline`` must be empty),
            ``task`` (one of ``mmquerymeld.utils.TASKS``), ``ratio`` (sampling weight, default 1)
            and ``name`` (unique).
        lazy_init: build the sources without loading annotations (``full_init`` later).
        max_refetch: bound on the refetches of a source after a skipped (None) sample.
        exclude_list: samples to leave out: the JSON written by
            ``tools/misc/check_dataset.py --fix-list`` (path), or its ``exclude`` entries
            (``[{source, index, path}, ...]``; ``index`` in the source, ``path`` its image,
            checked so that a stale list fails loudly).
        on_bad_image: test-mode sources only (training refetches another sample): an image that
            does not decode either stops the run at once with its path (``'raise'``), or is
            logged and replaced by a blank placeholder whose sample carries the metainfo
            ``bad_image`` (its path); ``MultiSourceMetric`` leaves it out of the metrics and
            reports ``<source>/skipped_images`` (``'skip'``).
    """

    def __init__(self, sources: Sequence[dict], lazy_init: bool = False,
                 max_refetch: int = 20, exclude_list: Optional[Union[str, list]] = None,
                 on_bad_image: str = 'raise') -> None:
        if not sources:
            raise ValueError('MultiSourceDataset needs at least one source')
        if on_bad_image not in ON_BAD_IMAGE:
            raise ValueError(f'on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}')
        self.on_bad_image = on_bad_image
        self.exclude_list = exclude_list
        self.source_names: List[str] = []
        self.source_tasks: List[str] = []
        self.source_ratios: List[float] = []
        datasets: List[BaseDataset] = []
        for i, src in enumerate(sources):
            src = dict(src)
            unknown = set(src) - _SOURCE_KEYS
            if unknown:
                raise KeyError(f'source {i}: unknown keys {sorted(unknown)}; expected '
                               f'{sorted(_SOURCE_KEYS)}')
            for key in ('dataset', 'task', 'name'):
                if key not in src:
                    raise KeyError(f'source {i} ({src.get("name", "?")}): missing "{key}"')
            name, task = str(src['name']), src['task']
            if name in self.source_names:
                raise ValueError(f'duplicate source name {name!r}')
            if task not in TASKS:
                raise ValueError(f'source {name!r}: task {task!r} not in {TASKS}')
            ratio = float(src.get('ratio', 1.0))
            if ratio < 0:
                raise ValueError(f'source {name!r}: negative ratio {ratio}')
            # data pipelines live in mmdet's scope (docs/data_contract.md), whatever the caller's
            with DefaultScope.overwrite_default_scope('mmdet'):
                datasets.append(self._build_source(name, task, src['dataset'],
                                                   src.get('pipeline', []), max_refetch))
            self.source_names.append(name)
            self.source_tasks.append(task)
            self.source_ratios.append(ratio)
        if sum(self.source_ratios) <= 0:
            raise ValueError('at least one source needs a positive ratio')
        self._lazy = lazy_init
        # no forced common metainfo: every key may differ between sources
        keys = sorted({k for d in datasets for k in d.metainfo})
        super().__init__(datasets, lazy_init=True, ignore_keys=keys)
        if not lazy_init:
            self.full_init()

    @staticmethod
    def _build_source(name: str, task: str, cfg: Union[dict, BaseDataset],
                      pipeline: Sequence[dict], max_refetch: int) -> BaseDataset:
        if isinstance(cfg, dict):
            cfg = copy.deepcopy(cfg)
            if cfg.get('pipeline'):
                raise ValueError(f'source {name!r}: put the pipeline in the source\'s '
                                 '"pipeline", not in its dataset config')
            cfg['pipeline'] = []
            cfg['lazy_init'] = True
            dataset = DATASETS.build(cfg)
        elif isinstance(cfg, BaseDataset):
            dataset = cfg
        else:
            raise TypeError(f'source {name!r}: dataset must be a config dict or a BaseDataset, '
                            f'got {type(cfg)}')
        MultiSourceDataset._check_paths(name, dataset)
        info = SetSourceInfo(name, task, MultiSourceDataset._source_meta(dataset, task))
        dataset.pipeline = Compose([info] + _build_transforms(pipeline))
        if hasattr(dataset, 'max_refetch'):
            dataset.max_refetch = max_refetch
        return dataset

    @staticmethod
    def _check_paths(name: str, dataset: BaseDataset) -> None:
        """A missing annotation file / label folder is an error naming the path."""
        ann_file = getattr(dataset, 'ann_file', '')
        if ann_file and not osp.isdir(ann_file):
            require_file(ann_file, 'annotation file', f'source {name!r}')
        prefix = getattr(dataset, 'data_prefix', {}) or {}
        for key in ('seg', 'seg_map_path'):
            if prefix.get(key):
                require_dir(prefix[key], 'annotation folder', f'source {name!r}')

    @staticmethod
    def _source_meta(dataset: BaseDataset, task: str) -> dict:
        meta = copy.deepcopy(dataset.metainfo)
        classes, flags = split_thing_stuff(meta)
        if classes is not None:
            meta['classes'] = classes
        if flags is None and classes is not None and task in ('instance', 'detection'):
            flags = [True] * len(classes)
        if flags is not None:
            meta['thing_flags'] = flags
        meta['task'] = task
        return meta

    def _exclude(self, spec: Union[str, list]) -> None:
        """Drop the samples named by a fix list (see ``exclude_list``)."""
        where = spec if isinstance(spec, str) else 'exclude_list'
        if isinstance(spec, str):
            require_file(spec, 'exclude list', 'MultiSourceDataset')
            with open(spec) as f:
                spec = json.load(f).get('exclude', [])
        drop: Dict[str, set] = {}
        for entry in spec:
            name, index = entry.get('source'), entry.get('index')
            if name not in self.source_names:
                continue  # a source of another split / config
            ds = self.datasets[self.source_names.index(name)]
            if not isinstance(index, int) or not 0 <= index < len(ds):
                raise ValueError(f'{where}: source {name!r} has no sample {index}')
            path = ds.get_data_info(index).get('img_path')
            if entry.get('path') is not None and str(path) != str(entry['path']):
                raise ValueError(f'{where}: source {name!r} sample {index} is {path}, not '
                                 f'{entry["path"]}: the list is stale (rerun check_dataset)')
            drop.setdefault(name, set()).add(index)
        for name, indices in drop.items():
            ds = self.datasets[self.source_names.index(name)]
            ds.get_subset_([i for i in range(len(ds)) if i not in indices])
            print_log(f'MultiSourceDataset: source {name!r}: excluded {len(indices)} samples '
                      f'({where})', logger='current')

    # ------------------------------------------------------------------ test-mode bad images
    def __getitem__(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        d, local = self._get_ori_dataset_idx(idx)
        ds = self.datasets[d]
        if not ds.test_mode:
            return ds[local]
        data = ds.prepare_data(local)
        if data is None:  # SafeLoadImageFromFile could not read the image
            data = self._bad_test_image(d, local)
        return data

    def _bad_test_image(self, d: int, local: int) -> dict:
        ds, name = self.datasets[d], self.source_names[d]
        info = ds.get_data_info(local)
        path = info.get('img_path')
        msg = f'source {name!r}: test image #{local} {path} does not decode'
        if self.on_bad_image == 'raise':
            raise RuntimeError(f'{msg}; set on_bad_image=\'skip\' on the MultiSourceDataset to '
                               'evaluate without it, or leave it out with exclude_list '
                               '(tools/misc/check_dataset.py --fix-list)')
        print_log(f'{msg}: skipped (counted as {name}/skipped_images)', logger='current',
                  level=30)
        h, w = _placeholder_shape(info)
        results = dict(info, img=np.zeros((h, w, 3), dtype=np.uint8), img_shape=(h, w),
                       ori_shape=(h, w))
        try:
            for t in ds.pipeline.transforms:
                if not isinstance(t, SafeLoadImageFromFile):
                    results = t(results)
        except Exception as err:  # noqa: BLE001
            raise RuntimeError(f'{msg}, and its placeholder failed in the pipeline '
                               f'({type(err).__name__}: {err})') from err
        results['data_samples'].set_metainfo(dict(bad_image=str(path)))
        return results

    # ------------------------------------------------------------------ info
    def full_init(self) -> None:
        """Load every source's annotations, then refresh the per-source metainfo."""
        if self._fully_initialized:
            return
        for ds in self.datasets:
            ds.full_init()
        if self.exclude_list is not None:
            self._exclude(self.exclude_list)
        super().full_init()
        for ds, name, task in zip(self.datasets, self.source_names, self.source_tasks):
            info = ds.pipeline.transforms[0]
            info.metainfo = self._source_meta(ds, task)  # classes read from JSON at init

    @property
    def metainfo(self) -> dict:
        sources: Dict[str, dict] = {}
        for ds, name, task, ratio in zip(self.datasets, self.source_names, self.source_tasks,
                                         self.source_ratios):
            meta = self._source_meta(ds, task)
            meta['ratio'] = ratio
            sources[name] = meta
        return dict(sources=sources, source_names=list(self.source_names),
                    tasks=list(self.source_tasks), ratios=list(self.source_ratios))

    def get_source_name(self, idx: int) -> str:
        """Name of the source that global index ``idx`` belongs to."""
        return self.source_names[self.get_dataset_source(idx)]

    def get_source_task(self, idx: int) -> str:
        """Task of the source that global index ``idx`` belongs to."""
        return self.source_tasks[self.get_dataset_source(idx)]

    @property
    def source_sizes(self) -> List[int]:
        """Number of samples per source (needs ``full_init``)."""
        return [len(d) for d in self.datasets]

    @property
    def num_skipped_images(self) -> int:
        """Unreadable images skipped so far in this process (all sources)."""
        return SafeLoadImageFromFile.num_skipped

    def source_slice(self, name: str) -> range:
        """Global index range of a source."""
        self.full_init()
        i = self.source_names.index(name)
        start = self.cumulative_sizes[i - 1] if i else 0
        return range(start, self.cumulative_sizes[i])



def _placeholder_shape(info: dict) -> tuple:
    """``(h, w)`` of a sample whose image does not decode: its recorded size, else its label
    map's, else 32 x 32."""
    if info.get('height') and info.get('width'):
        return int(info['height']), int(info['width'])
    seg = info.get('seg_map_path')
    if seg and osp.isfile(seg):
        with Image.open(seg) as img:  # reads the header only
            return img.size[1], img.size[0]
    return 32, 32
