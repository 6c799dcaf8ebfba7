"""One measured case of tools/analysis/benchmark.py, run in its own process.

The worker builds its model and inputs, makes one warm-up call (the first call: text encoding of
the vocabulary, lazy initialisation, optimizer states), reports ``ready``, then runs one timed
repetition per ``'run'`` message from the parent (who interleaves the repetitions of the cases of
a group) and answers with its time and peak memory, until ``'quit'``.

Peak memory of a call, above what the process holds just before it (the loaded model, its cached
vocabulary and, in training, the optimizer state):

* CPU: the kernel's resident-set high-water mark (``VmHWM``), reset before the call by writing
  ``5`` to ``/proc/self/clear_refs``, after ``gc.collect()`` and glibc's ``malloc_trim(0)`` (so
  that freed heap pages are not counted as held); where the reset is refused, a thread samples
  ``VmRSS`` every millisecond instead.
* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus
  ``memory_allocated`` before the call.
"""
import copy
import ctypes
import gc
import logging
import re
import threading
import time
import traceback
from typing import Callable, Dict, Optional, Tuple

import torch

from benchmark_inputs import (count_panoptic_segments, fix_panoptic_segments, predict_batch,
                              training_batch, vocabulary)
from benchmark_models import build_model, count_params

MB = 1024 * 1024


def _status_kb(key: str) -> int:
    with open('/proc/self/status') as f:
        match = re.search(rf'^{key}:\s+(\d+) kB', f.read(), re.M)
    return int(match.group(1)) if match else 0


class PeakMemory:
    """Peak memory of one call above the memory held just before it, in MiB."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith('cuda')
        self._libc = None
        self._sampler: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._sampled = 0
        self.method = 'cuda.max_memory_allocated' if self.cuda else 'VmHWM reset'
        if not self.cuda:
            try:
                self._libc = ctypes.CDLL('libc.so.6')
            except OSError:
                self._libc = None
            try:
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
            except OSError:
                self.method = 'VmRSS sampled every 1 ms'

    def held_mb(self) -> float:
        """Memory held now: allocated CUDA memory, or the resident set."""
        if self.cuda:
            return torch.cuda.memory_allocated() / MB
        return _status_kb('VmRSS') / 1024

    def start(self) -> float:
        """Reset the peak; return the memory held now (the baseline)."""
        gc.collect()  # cheap: the long-lived objects are frozen (worker_main)
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self.held_mb()
        if self._libc is not None:
            self._libc.malloc_trim(0)
        if self.method == 'VmHWM reset':
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')
        else:
            self._stop.clear()
            self._sampled = _status_kb('VmRSS')
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self.held_mb()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled = max(self._sampled, _status_kb('VmRSS'))
            time.sleep(0.001)

    def peak_mb(self) -> float:
        """Peak since :meth:`start` (absolute, MiB)."""
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / MB
        if self.method == 'VmHWM reset':
            return _status_kb('VmHWM') / 1024
        self._stop.set()
        self._sampler.join()
        return self._sampled / 1024


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _batch_mb(batch: dict) -> float:
    """Size of a packed batch: images, ground-truth masks (however stored) and seg maps."""
    total = sum(t.numel() * t.element_size() for t in batch['inputs'])
    for sample in batch['data_samples']:
        fields = list(sample.gt_instances.values()) if 'gt_instances' in sample else []
        if 'gt_sem_seg' in sample:
            fields.append(sample.gt_sem_seg.sem_seg)
        for value in fields:
            value = getattr(value, 'masks', value)  # BitmapMasks -> ndarray
            total += getattr(value, 'nbytes', 0) if not isinstance(value, torch.Tensor) else \
                value.numel() * value.element_size()
    return total / MB


def _prepare(spec: Dict) -> Tuple[Callable[[], object], Callable[[object], object], Dict]:
    """Build the model and the call of the case; returns (make_data, call, info)."""
    device = spec['device']
    model, optim_cfg = build_model(spec['model'], spec['quick'], spec['m2f_instance_on'],
                                   device)
    info = dict(params_m=round(count_params(model) / 1e6, 2),
                device_name=torch.cuda.get_device_name() if device.startswith('cuda') else None)
    if spec['mode'] == 'train':
        from mmengine.optim import build_optim_wrapper
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
        model.train()
        batch = training_batch(spec['model'], spec['size'][0], spec['box_only'],
                               seed=spec['seed'])
        info['batch_mb'] = round(_batch_mb(batch), 1)
        return (lambda: copy.deepcopy(batch),
                lambda data: model.train_step(data, optim_wrapper), info)
    model.eval()
    texts = vocabulary(spec['task'], spec['vocab']) if spec['model'] == 'querymeld' else []
    batch = predict_batch(spec['model'], spec['task'], texts, tuple(spec['size']),
                          tuple(spec['ori']), seed=spec['seed'])
    if spec['task'] == 'panoptic':
        fix_panoptic_segments(model, spec['model'], spec['fixed_segments'])
        info['void'] = len(texts) if spec['model'] == 'querymeld' else \
            model.panoptic_fusion_head.num_classes

    def call(data):
        with torch.no_grad():
            return model.test_step(data)

    return (lambda: copy.copy(batch) | {'data_samples': copy.deepcopy(batch['data_samples'])},
            call, info)


def _measure(make_data, call, memory: PeakMemory, device: str) -> Tuple[object, Dict]:
    data = make_data()
    base = memory.start()
    _sync(device)
    start = time.perf_counter()
    out = call(data)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = memory.peak_mb()
    return out, dict(time_s=seconds, peak_mb=max(0.0, peak - base), base_mb=base)


def worker_main(spec: Dict, conn) -> None:
    """Entry point of a case process: build, warm up, then answer ``'run'`` / ``'quit'``.

    Args:
        spec: The case (see ``benchmark.py``: mode, model, device, size, ori, task, vocab, ...).
        conn: The worker's end of a ``multiprocessing.Pipe``.
    """
    try:
        device = spec['device']
        gc.freeze()  # long-lived objects (the imports, then the model) are never scanned again
        if spec.get('threads'):
            torch.set_num_threads(spec['threads'])
        torch.manual_seed(spec['seed'])
        if spec.get('msda_pytorch'):
            import mmcv.ops.multi_scale_deform_attn as msda
            msda.IS_CUDA_AVAILABLE = False  # mmcv's CUDA ops not built: its PyTorch path
        from mmengine.logging import MMLogger
        MMLogger.get_current_instance().setLevel(logging.ERROR)  # no per-parameter log lines
        start = time.perf_counter()
        make_data, call, info = _prepare(spec)
        info['build_s'] = time.perf_counter() - start
        gc.collect()  # scans only what the build created
        gc.freeze()
        memory = PeakMemory(device)
        out, first = _measure(make_data, call, memory, device)
        gc.collect()
        gc.freeze()
        info.update(first_call_s=first['time_s'], first_peak_mb=first['peak_mb'],
                    model_mb=first['base_mb'], memory_method=memory.method)
        void = info.pop('void', None)
        if void is not None:
            info['segments'] = count_panoptic_segments(out[0], void)
        conn.send(dict(ready=True, **info))
        while conn.recv() == 'run':
            out, rep = _measure(make_data, call, memory, device)
            if void is not None:
                rep['segments'] = count_panoptic_segments(out[0], void)
            del out
            conn.send(rep)
    except BaseException:  # noqa: B902  (report any failure to the parent, then exit)
        try:
            conn.send(dict(error=traceback.format_exc(limit=8)))
        except (BrokenPipeError, OSError):
            pass
    finally:
        conn.close()
