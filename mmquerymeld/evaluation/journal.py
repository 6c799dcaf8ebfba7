"""A prediction journal: evaluation that resumes instead of starting over.

``tools/test.py --out results.pkl`` (one process) appends every finished batch's predictions to
``results.pkl.journal`` (length-framed pickles, flushed and fsync'ed per batch, so a SIGKILL loses
at most the batch in flight). A rerun with the same checkpoint and dataset feeds the journal's
predictions to the evaluator, predicts only the samples the journal lacks
(:class:`JournalSampler`), and ends with the same dump and metrics as an uninterrupted run (same
samples, same order). The dump itself is written atomically (:class:`AtomicDumpResults`).

Record layout: ``<8-byte little-endian length><pickle>``; the first record is the header
``{'journal': VERSION, 'fingerprint': {...}}``, each following one ``{'indices': [dataset
indices], 'samples': [prediction dicts]}``. A torn last record (killed mid-write) is cut off.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import struct
from typing import Any, Dict, Iterator, List, Optional, Sequence

from mmdet.registry import DATA_SAMPLERS, HOOKS, METRICS
from mmengine.evaluator import DumpResults
from mmengine.evaluator.metric import _to_cpu
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from torch.utils.data import Sampler

from ..utils.atomic import atomic_open

VERSION = 1
_LEN = struct.Struct('<Q')


def journal_path(out_file: str) -> str:
    """The journal that belongs to the dump ``out_file``."""
    return out_file + '.journal'


def read_journal(path: str, fingerprint: Optional[dict] = None,
                 repair: bool = True) -> List[dict]:
    """The complete batch records of a journal (none when it does not exist).

    Args:
        path: Journal file.
        fingerprint: When given, must equal the header's (same checkpoint, same dataset).
        repair: Truncate a torn last record off the file.

    Returns:
        ``[{'indices': [...], 'samples': [...]}, ...]`` in the order they were written.
    """
    if not osp.isfile(path):
        return []
    records, good_end = [], 0
    with open(path, 'rb') as f:
        data = f.read()
    pos = 0
    while pos + _LEN.size <= len(data):
        (size, ) = _LEN.unpack_from(data, pos)
        end = pos + _LEN.size + size
        if end > len(data):
            break
        try:
            records.append(pickle.loads(data[pos + _LEN.size:end]))
        except Exception:  # noqa: BLE001  (a torn record: stop at the last good one)
            break
        pos = good_end = end
    if repair and good_end < len(data):
        with open(path, 'r+b') as f:
            f.truncate(good_end)
    if not records:
        return []
    header = records[0]
    if not isinstance(header, dict) or header.get('journal') != VERSION:
        raise ValueError(f'{path}: not a prediction journal of version {VERSION}')
    if fingerprint is not None and header.get('fingerprint') != fingerprint:
        raise ValueError(f'{path} was written for {header.get("fingerprint")}, not for '
                         f'{fingerprint} (another checkpoint or dataset); delete it to start '
                         'the evaluation over')
    return records[1:]


def finished_indices(path: str) -> List[int]:
    """Dataset indices whose predictions are in the journal."""
    return [i for rec in read_journal(path, repair=False) for i in rec['indices']]


class JournalWriter:
    """Append-only writer: one framed record per call, flushed and fsync'ed."""

    def __init__(self, path: str, fingerprint: dict) -> None:
        new = not osp.isfile(path) or osp.getsize(path) == 0
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        self.path = path
        self._file = open(path, 'ab')
        if new:
            self.append(dict(journal=VERSION, fingerprint=fingerprint))

    def append(self, record: Any) -> None:
        payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        self._file.write(_LEN.pack(len(payload)) + payload)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@DATA_SAMPLERS.register_module()
class JournalSampler(Sampler):
    """Sequential sampler over the indices a prediction journal does not hold yet.

    Args:
        dataset: The test dataset.
        journal: Journal file (absent: every index).
        seed: Unused (mmengine passes it to every sampler).
    """

    def __init__(self, dataset: Sequence, journal: str, seed: Optional[int] = None) -> None:
        done = set(finished_indices(journal))
        self.num_finished = len(done)
        self.indices = [i for i in range(len(dataset)) if i not in done]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@HOOKS.register_module()
class PredictionJournalHook(Hook):
    """Feed the journal to the evaluator before testing; journal every finished batch.

    Needs the test dataloader's sampler to be a :class:`JournalSampler` on the same journal
    (its order names the dataset index of every prediction).

    Args:
        journal: Journal file.
        fingerprint: What the journal belongs to (checkpoint, dataset); a journal with another
            fingerprint is refused.
    """

    priority = 'VERY_LOW'

    def __init__(self, journal: str, fingerprint: dict) -> None:
        self.journal = journal
        self.fingerprint = fingerprint
        self._writer: Optional[JournalWriter] = None
        self._order: List[int] = []
        self._pos = 0

    def before_test_epoch(self, runner) -> None:
        loop = runner.test_loop
        sampler = loop.dataloader.sampler
        if not isinstance(sampler, JournalSampler):
            raise TypeError('PredictionJournalHook needs test_dataloader.sampler='
                            f'JournalSampler, got {type(sampler).__name__}')
        records = read_journal(self.journal, self.fingerprint)
        done = 0
        for rec in records:
            loop.evaluator.process(data_samples=rec['samples'], data_batch=None)
            done += len(rec['samples'])
        self._order, self._pos = list(sampler.indices), 0
        runner.logger.info(f'prediction journal {self.journal}: resumed {done} finished '
                           f'samples, {len(self._order)} left to predict')
        self._writer = JournalWriter(self.journal, self.fingerprint)

    def after_test_iter(self, runner, batch_idx: int, data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        samples = [s.to_dict() if isinstance(s, BaseDataElement) else s for s in outputs or []]
        indices = self._order[self._pos:self._pos + len(samples)]
        self._pos += len(samples)
        self._writer.append(dict(indices=indices, samples=_to_cpu(samples)))

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@METRICS.register_module()
class AtomicDumpResults(DumpResults):
    """mmengine's ``DumpResults`` writing the pickle atomically (temporary file + rename)."""

    def compute_metrics(self, results: list) -> dict:
        with atomic_open(self.out_file_path, 'wb') as f:
            pickle.dump(results, f, protocol=pickle.HIGHEST_PROTOCOL)
        print_log(f'Results have been saved to {self.out_file_path}.', logger='current')
        return {}


def journal_fingerprint(checkpoint: str, dataset_cfg: Any) -> Dict[str, Any]:
    """What a journal belongs to: the checkpoint file (path, size, mtime) and the test dataset
    config (its text, without ``on_bad_image``: skipping an unreadable image changes no other
    sample's prediction, so a run stopped by one resumes with ``on_bad_image='skip'``)."""
    import copy
    import hashlib
    st = os.stat(checkpoint)
    cfg = copy.deepcopy(dict(dataset_cfg))
    cfg.pop('on_bad_image', None)
    text = repr(sorted(cfg.items(), key=lambda kv: kv[0])).encode()
    return dict(checkpoint=osp.abspath(checkpoint), size=st.st_size, mtime_ns=st.st_mtime_ns,
                dataset=hashlib.sha1(text).hexdigest()[:16])
