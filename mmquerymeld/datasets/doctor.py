"""Dataset doctor: walk every source of a config's ``MultiSourceDataset`` and report what is bad.

Back end of ``tools/misc/check_dataset.py``. Three passes per source (mmdet's
``browse_dataset`` / detectron2's ``DatasetFromList`` checks, extended to a multi-source mix):

1. build: the source's dataset is built alone; a missing or unparseable annotation file makes the
   source *unusable* (the other sources are still checked);
2. raw annotations (COCO-style JSON: instances, panoptic, RefCOCO, box-only): every annotation the
   loaders would silently drop is reported: labels outside the vocabulary, boxes outside the image
   or of zero area, polygons / RLEs that rasterise to nothing;
3. samples (optionally in ``workers`` processes): the image decodes completely (PIL, which catches
   truncated JPEGs that OpenCV decodes with a warning), label maps / masks / panoptic PNGs exist
   and decode, referring expressions fit the text encoder's context length, and the source's
   pipeline runs (label values inside the vocabulary, targets not empty).

A source is unusable when it cannot be built, has no sample, disagrees with the evaluator on its
class names, or when more than ``max_bad_ratio`` of its samples carry an error. Warnings (empty
targets) never make a source unusable.
"""
from __future__ import annotations

import copy
import io
import json
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..utils.atomic import atomic_write
from .annotation_audit import audit_coco_json

ERROR, WARNING = 'error', 'warning'
#: Issue kinds and their severity.
KINDS = {
    'unusable': ERROR, 'image_unreadable': ERROR, 'missing_file': ERROR,
    'annotation_unreadable': ERROR,
    'label_outside_vocabulary': ERROR, 'box_outside_image': ERROR, 'degenerate_box': ERROR,
    'degenerate_mask': ERROR, 'text_too_long': ERROR, 'pipeline_error': ERROR,
    'class_mismatch': ERROR, 'empty_target': WARNING,
}
FIX_LIST_VERSION = 1


@dataclass
class Issue:
    """One finding: ``index`` is the sample's index in its source (None: not a loaded sample)."""

    source: str
    kind: str
    path: str
    detail: str
    index: Optional[int] = None

    @property
    def severity(self) -> str:
        return KINDS[self.kind]


@dataclass
class SourceReport:
    """Findings of one source."""

    name: str
    task: str
    num_samples: int = 0
    issues: List[Issue] = field(default_factory=list)
    unusable: Optional[str] = None

    @property
    def bad_indices(self) -> List[int]:
        """Sample indices with at least one error."""
        return sorted({i.index for i in self.issues
                       if i.severity == ERROR and i.index is not None})

    def count(self, kind: str) -> int:
        return sum(i.kind == kind for i in self.issues)


@dataclass
class DoctorReport:
    """Findings of every source of one split."""

    split: str
    sources: List[SourceReport]

    @property
    def exit_code(self) -> int:
        """0 when every source is usable, 1 otherwise."""
        return int(any(s.unusable for s in self.sources))

    def fix_list(self) -> dict:
        """The samples to exclude: ``{'version', 'split', 'exclude': [{source, index, path,
        reasons}]}``, readable by ``MultiSourceDataset(exclude_list=...)``."""
        out = []
        for src in self.sources:
            by_index: Dict[int, dict] = {}
            for issue in src.issues:
                if issue.severity != ERROR or issue.index is None:
                    continue
                entry = by_index.setdefault(issue.index, dict(
                    source=src.name, index=issue.index, path=issue.path, reasons=[]))
                entry['reasons'].append(f'{issue.kind}: {issue.detail}')
            out.extend(by_index[i] for i in sorted(by_index))
        return dict(version=FIX_LIST_VERSION, split=self.split, exclude=out)

    def write_fix_list(self, path: str) -> None:
        atomic_write(path, json.dumps(self.fix_list(), indent=1))

    def format(self, max_lines: int = 20) -> str:
        """Human-readable report: a summary line per source, then its first issues."""
        lines = []
        for src in self.sources:
            status = f'UNUSABLE ({src.unusable})' if src.unusable else 'ok'
            kinds = sorted({i.kind for i in src.issues})
            counts = ', '.join(f'{k}={src.count(k)}' for k in kinds) or 'no issues'
            lines.append(f'[{src.name}] task={src.task} samples={src.num_samples} '
                         f'bad={len(src.bad_indices)} {counts}: {status}')
            for issue in src.issues[:max_lines]:
                where = f'#{issue.index} ' if issue.index is not None else ''
                lines.append(f'  {issue.severity} {issue.kind} {where}{issue.path}: '
                             f'{issue.detail}')
            if len(src.issues) > max_lines:
                lines.append(f'  ... {len(src.issues) - max_lines} more')
        return '\n'.join(lines)

    def to_dict(self) -> dict:
        return dict(split=self.split, exit_code=self.exit_code, sources=[
            dict(name=s.name, task=s.task, num_samples=s.num_samples, unusable=s.unusable,
                 bad_indices=s.bad_indices, issues=[dict(asdict(i), severity=i.severity)
                                                    for i in s.issues])
            for s in self.sources])


# ---------------------------------------------------------------------------- config helpers
def split_sources(cfg: Any, split: str) -> List[dict]:
    """The source configs of ``cfg.<split>_dataloader.dataset`` (a ``MultiSourceDataset``)."""
    key = f'{split}_dataloader'
    if key not in cfg:
        raise KeyError(f'config has no {key}')
    ds = cfg[key]['dataset']
    if ds.get('type') != 'MultiSourceDataset':
        raise ValueError(f'{key}.dataset must be a MultiSourceDataset, got {ds.get("type")!r}')
    return [copy.deepcopy(dict(s)) for s in ds['sources']]


def text_context_length(cfg: Any) -> Optional[tuple]:
    """``(model_name, context_length)`` of the config's text encoder, without building it."""
    enc = cfg.get('model', {}).get('head', {}).get('text_encoder')
    if not enc or 'model_name' not in enc:
        return None
    import open_clip

    import mmquerymeld.models.text  # noqa: F401  (registers 'QM-Tiny')
    name = enc['model_name']
    arch = open_clip.get_model_config(name.replace('/', '-')) or {}
    tower = int(arch.get('text_cfg', {}).get('context_length', 77))
    return name, min(int(enc.get('context_length') or tower), tower)


def evaluator_classes(cfg: Any, split: str) -> Dict[str, List[List[str]]]:
    """Class names each source's evaluator metrics read from their ``ann_file`` (by source)."""
    ev = cfg.get('test_evaluator' if split == 'test' else 'val_evaluator')
    ev = list(ev) if isinstance(ev, (list, tuple)) else ([ev] if ev else [])
    out: Dict[str, List[List[str]]] = {}
    for metric in ev:
        if metric.get('type') != 'MultiSourceMetric':
            continue
        for source, specs in metric['metrics'].items():
            specs = specs if isinstance(specs, (list, tuple)) else [specs]
            for spec in specs:
                ann = spec.get('ann_file')
                if ann:
                    out.setdefault(source, []).append([ann, _json_classes(ann)])
    return out


def _json_classes(path: str) -> Optional[List[str]]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        cats = json.load(f).get('categories', [])
    return [c['name'] for c in sorted(cats, key=lambda c: c['id'])]


# ----------------------------------------------------------------------------- sample checks
class SampleChecker:
    """Per-sample checks of one built source, indexable so a DataLoader can run it in workers.

    ``checker[i]`` returns the list of :class:`Issue` of sample ``i``.
    """

    def __init__(self, name: str, dataset: Any, tokenizer: Optional[Callable] = None,
                 context_length: Optional[int] = None) -> None:
        self.name = name
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> List[Issue]:
        info = self.dataset.get_data_info(index)
        path = str(info.get('img_path', ''))
        issues = []
        decoded = self._check_image(path)
        if decoded:
            issues.append(Issue(self.name, 'image_unreadable', path, decoded, index))
        seg = info.get('seg_map_path')
        if seg and '://' not in str(seg):
            if not osp.isfile(seg):
                issues.append(Issue(self.name, 'missing_file', path,
                                    f'label map / mask not found: {seg}', index))
            elif self._check_image(seg):
                issues.append(Issue(self.name, 'annotation_unreadable', path,
                                    f'label map / mask {seg} {self._check_image(seg)}', index))
        issues += self._check_texts(info, path, index)
        if not issues:  # the pipeline would only repeat the failures above
            issues += self._run_pipeline(info, path, index)
        return issues

    @staticmethod
    def _check_image(path: str) -> str:
        """'' when the image decodes completely, else the reason."""
        from PIL import Image
        if not osp.isfile(path):
            return 'file not found'
        try:
            with open(path, 'rb') as f:
                img = Image.open(io.BytesIO(f.read()))
                img.load()  # decodes every byte: truncated files raise here
        except Exception as err:  # noqa: BLE001  (any decoder failure)
            return f'does not decode ({type(err).__name__}: {err})'
        return ''

    def _check_texts(self, info: dict, path: str, index: int) -> List[Issue]:
        if self.tokenizer is None:
            return []
        from mmquerymeld.models.text.open_clip_utils import tokenize
        texts = sorted({str(t) for inst in info.get('instances', []) or []
                        for t in (inst.get('texts') or [])})
        if not texts:
            return []
        _, truncated = tokenize(self.tokenizer, texts, self.context_length)
        return [Issue(self.name, 'text_too_long', path,
                      f'{texts[i]!r} is longer than the text context length '
                      f'{self.context_length} tokens', index)
                for i in truncated.nonzero().flatten().tolist()]

    def _run_pipeline(self, info: dict, path: str, index: int) -> List[Issue]:
        try:
            out = self.dataset.pipeline(copy.deepcopy(info))
        except Exception as err:  # noqa: BLE001  (report, do not stop the walk)
            msg = f'{type(err).__name__}: {err}'
            kind = 'label_outside_vocabulary' if 'outside the' in msg else 'pipeline_error'
            return [Issue(self.name, kind, path, msg, index)]
        if out is None:
            return [Issue(self.name, 'pipeline_error', path, 'the pipeline returned None',
                          index)]
        sample = out.get('data_samples')
        if sample is not None and _is_empty(sample):
            return [Issue(self.name, 'empty_target', path, 'no target after the pipeline',
                          index)]
        return []


def _is_empty(sample: Any) -> bool:
    inst = sample.get('gt_instances')
    if inst is not None and len(inst) > 0:
        return False
    sem = sample.get('gt_sem_seg')
    if sem is not None:
        ignore = sample.metainfo.get('seg_ignore_index', 255)
        data = sem.sem_seg
        return not bool((data != ignore).any())
    return True


# ------------------------------------------------------------------------------------ driver
def check_dataset(cfg: Any, split: str = 'train', workers: int = 0, max_bad_ratio: float = 0.1,
                  progress: bool = True) -> DoctorReport:
    """Check every source of ``cfg.<split>_dataloader.dataset``.

    Args:
        cfg: An mmengine ``Config`` (or dict) of a QueryMeldNet config.
        split: ``'train'``, ``'val'`` or ``'test'``.
        workers: DataLoader worker processes for the sample checks (0: in this process).
        max_bad_ratio: A source with more than this fraction of samples in error is unusable.
        progress: Show mmengine's progress bar.

    Returns:
        The :class:`DoctorReport`; its ``exit_code`` is non-zero when a source is unusable.
    """
    import mmquerymeld.datasets  # noqa: F401  (registers loaders and transforms)
    from .multi_source import MultiSourceDataset
    text = text_context_length(cfg)
    tokenizer = None
    if text is not None:
        from mmquerymeld.models.text.open_clip_utils import get_tokenizer
        tokenizer = get_tokenizer(text[0], text[1])
    eval_classes = evaluator_classes(cfg, split) if split != 'train' else {}
    exclude = cfg[f'{split}_dataloader']['dataset'].get('exclude_list')
    reports = []
    for src in split_sources(cfg, split):
        report = SourceReport(str(src.get('name')), str(src.get('task')))
        reports.append(report)
        try:
            ds = MultiSourceDataset([src], exclude_list=exclude).datasets[0]
        except Exception as err:  # noqa: BLE001  (a source that cannot load is unusable)
            report.unusable = f'cannot load: {type(err).__name__}: {err}'
            report.issues.append(Issue(report.name, 'unusable', '', report.unusable))
            continue
        report.num_samples = len(ds)
        index_of = {str(ds.get_data_info(i).get('img_path')): i for i in range(len(ds))}
        report.issues += audit_coco_json(report.name, ds, index_of)
        report.issues += _class_mismatches(report.name, ds, eval_classes.get(report.name, []))
        checker = SampleChecker(report.name, ds, tokenizer, text[1] if text else None)
        report.issues += _walk(checker, workers, progress)
        _decide(report, max_bad_ratio)
    return DoctorReport(split, reports)


def _class_mismatches(name: str, ds: Any, evaluated: Sequence[list]) -> List[Issue]:
    classes = list(ds.metainfo.get('classes') or [])
    out = []
    for ann_file, names in evaluated:
        if names is None:
            out.append(Issue(name, 'class_mismatch', ann_file,
                             'the evaluator\'s annotation file is missing'))
        elif names != classes:
            only_ds = [c for c in classes if c not in names][:5]
            only_ev = [c for c in names if c not in classes][:5]
            out.append(Issue(name, 'class_mismatch', ann_file,
                             f'dataset has {len(classes)} classes, evaluator {len(names)}; '
                             f'only in dataset: {only_ds}, only in evaluator: {only_ev}'
                             + ('' if only_ds or only_ev else ' (same names, other order)')))
    return out


def _walk(checker: SampleChecker, workers: int, progress: bool) -> List[Issue]:
    from mmengine.utils import ProgressBar
    from torch.utils.data import DataLoader
    bar = ProgressBar(len(checker)) if progress and len(checker) else None
    loader = DataLoader(checker, batch_size=None, num_workers=workers,
                        collate_fn=_identity)
    issues: List[Issue] = []
    for found in loader:
        issues += found
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.file.write('\n')
    return issues


def _identity(x: Any) -> Any:
    return x


def _decide(report: SourceReport, max_bad_ratio: float) -> None:
    if report.num_samples == 0:
        report.unusable = 'no samples'
    elif report.count('class_mismatch'):
        report.unusable = 'class names differ from the evaluator\'s'
    elif len(report.bad_indices) > max_bad_ratio * report.num_samples:
        report.unusable = (f'{len(report.bad_indices)}/{report.num_samples} samples bad '
                           f'(more than {max_bad_ratio:.0%})')
