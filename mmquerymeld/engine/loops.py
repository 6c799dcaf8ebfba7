"""``ResumableIterBasedTrainLoop``: resume an iteration-based run without replaying its data."""
import logging
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner.base_loop import BaseLoop
from mmengine.runner.utils import calc_dynamic_intervals
from torch.utils.data import BatchSampler, DataLoader

from mmdet.registry import LOOPS

from .rng_state import restore_rng_state
from .seeding import install_per_sample_seeding


class TrackedInfiniteIterator:
    """Endless iterator over a loader that knows its position: (epoch, batches of the epoch).

    As mmengine's ``_InfiniteDataloaderIterator`` it calls ``sampler.set_epoch`` and restarts
    the loader at the end of an epoch (without its two-second sleep).

    Args:
        dataloader: The training loader.
        epoch: Epoch the sampler is in.
        batches: Batches of that epoch consumed before this iterator starts.
    """

    def __init__(self, dataloader: DataLoader, epoch: int = 0, batches: int = 0) -> None:
        self.dataloader = dataloader
        self.epoch = epoch
        self.batches = batches
        self.fetched = 0  # batches this iterator pulled from the loader (resume replays none)
        self._iterator = iter(dataloader)

    def __iter__(self) -> 'TrackedInfiniteIterator':
        return self

    def __next__(self) -> Sequence[dict]:
        try:
            data = next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self.batches = 0
            sampler = getattr(self.dataloader, 'sampler', None)
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(self.epoch)
            self._iterator = iter(self.dataloader)
            data = next(self._iterator)
        self.batches += 1
        self.fetched += 1
        return data


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """:class:`IterBasedTrainLoop` whose resume is exact and does not replay finished batches.

    mmengine 0.10.7 resumes iteration ``k`` by pulling ``k`` batches through the loader (decoding
    and augmenting each: hours at iteration 300k). With a sampler that can start part-way
    (``set_start``, e.g. :class:`~mmquerymeld.datasets.MultiSourceRatioSampler`) and torch's plain
    ``BatchSampler``, this loop instead sets the sampler's epoch and position from the checkpoint
    (``data_position``, written by :class:`~mmquerymeld.engine.hooks.TrainStateHook`), so resume
    time does not grow with ``k`` and no sample of the epoch is seen twice or skipped. Other
    samplers fall back to mmengine's replay (with a warning).

    For bit-identical resumes it also (1) reseeds the augmentation per sample
    (:mod:`mmquerymeld.engine.seeding`), (2) gives the loader its own ``torch.Generator`` so that
    starting a loader iterator does not draw from the global generator, and (3) restores the
    checkpoint's RNG states right before the first resumed iteration.

    Args: as :class:`IterBasedTrainLoop`.
    """

    def __init__(self, runner, dataloader, max_iters: int, val_begin: int = 1,
                 val_interval: int = 1000,
                 dynamic_intervals: Optional[Sequence[Tuple[int, int]]] = None) -> None:
        # IterBasedTrainLoop.__init__ without its iterator: building one starts the workers,
        # which copy the dataset and the sampler before the resume position is known; the
        # iterator is built in ``run``
        BaseLoop.__init__(self, runner, dataloader)
        if int(max_iters) != max_iters:
            raise ValueError(f'max_iters should be an integer, got {max_iters}')
        self._max_iters = int(max_iters)
        self._max_epochs = 1
        self._epoch = 0
        self._iter = 0
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False  # set by EarlyStoppingHook
        if hasattr(self.dataloader.dataset, 'metainfo'):
            self.runner.visualizer.dataset_meta = self.dataloader.dataset.metainfo
        self.dynamic_milestones, self.dynamic_intervals = calc_dynamic_intervals(
            self.val_interval, dynamic_intervals)
        self.dataloader_iterator: Optional[TrackedInfiniteIterator] = None
        self._resume_rng: Optional[Dict[str, Any]] = None
        self._resume_data: Optional[Dict[str, int]] = None

    def data_position(self) -> Dict[str, int]:
        """Sampler epoch and batches of it consumed by the finished iterations."""
        it = self.dataloader_iterator
        if it is None:
            return dict(epoch=0, batches=0)
        return dict(epoch=int(it.epoch), batches=int(it.batches))

    def set_resume_state(self, rng_state: Optional[Dict[str, Any]],
                         data_position: Optional[Dict[str, int]]) -> None:
        """Called after a checkpoint is loaded; applied in :meth:`run` when resuming."""
        self._resume_rng = rng_state
        self._resume_data = data_position

    def _can_skip(self) -> bool:
        sampler = getattr(self.dataloader, 'sampler', None)
        return (hasattr(sampler, 'set_start') and hasattr(sampler, 'set_epoch')
                and type(self.dataloader.batch_sampler) is BatchSampler)

    def _start_data(self) -> None:
        """Build the loader iterator at the resume position (or replay, for other samplers)."""
        install_per_sample_seeding(self.dataloader.dataset)
        if getattr(self.dataloader, 'generator', None) is None:
            gen = torch.Generator()
            gen.manual_seed(int(self.runner.seed or 0))
            self.dataloader.generator = gen
        if self._iter == 0:
            self.dataloader_iterator = TrackedInfiniteIterator(self.dataloader)
            return
        pos = self._resume_data
        if pos is not None and self._can_skip():
            epoch, batches = pos['epoch'], pos['batches']
            sampler = self.dataloader.sampler
            start = batches * self.dataloader.batch_size
            if start >= len(sampler):  # the checkpoint closed an epoch
                epoch, batches, start = epoch + 1, 0, 0
            sampler.set_epoch(epoch)
            sampler.set_start(start)
            print_log(f'Resumed the data order at epoch {epoch}, batch {batches} of the sampler '
                      f'(iteration {self._iter}) without replaying finished batches',
                      logger='current')
            self.dataloader_iterator = TrackedInfiniteIterator(self.dataloader, epoch, batches)
            return
        why = ('the checkpoint has no data position' if pos is None else
               f'{type(self.dataloader.sampler).__name__} cannot start part-way')
        print_log(f'Advance dataloader {self._iter} steps to skip data that has already been '
                  f'trained ({why})', logger='current', level=logging.WARNING)
        self.dataloader_iterator = TrackedInfiniteIterator(self.dataloader)
        for _ in range(self._iter):
            next(self.dataloader_iterator)

    def run(self) -> torch.nn.Module:
        """Launch training (mmengine's loop, with the resume of the class docstring)."""
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        self._start_data()
        if self._iter > 0 and self._resume_rng is not None:
            restore_rng_state(self._resume_rng)
        self._resume_rng = self._resume_data = None
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model
