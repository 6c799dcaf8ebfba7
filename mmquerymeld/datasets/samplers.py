"""``MultiSourceRatioSampler``: per-source sampling ratios for joint training (appendix A.2).

mmdet's ``MultiSourceSampler`` fixes the per-source count of every batch but is infinite and
ignores epochs (``set_epoch`` does nothing), so it only suits iteration-based loops. This sampler
draws a finite epoch whose per-source counts follow the ratios exactly (largest-remainder
rounding), shuffles it with ``seed + epoch``, and splits it across ranks like mmengine's
``DefaultSampler`` (``indices[rank::world_size]``). It therefore works in epoch-based loops
(finite, ``set_epoch``) and iteration-based ones (mmengine's infinite iterator re-iterates it and
calls ``set_epoch``).

For exact resumption (``ResumableIterBasedTrainLoop``) the sampler can start an epoch part-way
(:meth:`MultiSourceRatioSampler.set_start`) instead of having the loop pull every finished batch
through the loader again, and every index it yields is a :class:`SeededIndex` carrying a seed
drawn from ``(seed, epoch, position in the epoch)``: the loader reseeds the augmentation RNGs with
it before loading the sample (``mmquerymeld.engine.seeding``), so a sample's augmentation does not
depend on which worker loads it or on how many samples that worker loaded before.
"""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from mmdet.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler


class SeededIndex(int):
    """A dataset index that carries the seed of its sample's augmentation.

    Behaves as the plain ``int`` everywhere (comparison, arithmetic, indexing); ``seed`` is read by
    the per-sample seeding fetch of ``mmquerymeld.engine.seeding``.
    """

    seed: int

    def __new__(cls, value: int, seed: int) -> 'SeededIndex':
        obj = super().__new__(cls, value)
        obj.seed = int(seed)
        return obj

    def __reduce__(self):
        # pickled into the loader workers' index queues
        return SeededIndex, (int(self), self.seed)


def allocate(total: int, weights: Sequence[float]) -> List[int]:
    """Split ``total`` draws proportionally to ``weights`` (largest remainder, exact sum)."""
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f'weights must be non-negative with a positive sum, got {list(weights)}')
    raw = total * w / w.sum()
    counts = np.floor(raw).astype(np.int64)
    rest = total - counts.sum()
    order = np.argsort(-(raw - counts), kind='stable')
    counts[order[:rest]] += 1
    return counts.tolist()


@DATA_SAMPLERS.register_module()
class MultiSourceRatioSampler(Sampler):
    """Sample a ``MultiSourceDataset`` (or any ``ConcatDataset``) with per-source ratios.

    Args:
        dataset: dataset with ``cumulative_sizes`` (and ``source_ratios`` when ``ratios`` is
            None).
        ratios: one weight per source; default: the dataset's ``source_ratios``.
        ratio_mode: ``'share'``: source ``s`` gets ``ratio_s / sum(ratio)`` of the draws;
            ``'repeat'``: its size is multiplied by ``ratio_s`` (Table 11's upsampling ratios),
            i.e. draws proportional to ``ratio_s * len_s``.
        num_samples: draws per epoch over all ranks; default ``len(dataset)`` (``'share'``) or
            ``round(sum(ratio_s * len_s))`` (``'repeat'``).
        shuffle: shuffle inside sources and across the epoch; otherwise sources are read in
            order and interleaved evenly.
        seed: base seed (synchronised across ranks when None).
        round_up: pad the epoch so every rank gets the same number of indices.
        rank: override of the distributed rank (tests simulate ranks with it).
        world_size: override of the world size.
    """

    def __init__(self, dataset, ratios: Optional[Sequence[float]] = None,
                 ratio_mode: str = 'share', num_samples: Optional[int] = None,
                 shuffle: bool = True, seed: Optional[int] = None, round_up: bool = True,
                 rank: Optional[int] = None, world_size: Optional[int] = None) -> None:
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        if not hasattr(dataset, 'cumulative_sizes'):
            raise TypeError(f'MultiSourceRatioSampler needs a ConcatDataset-like dataset, got '
                            f'{type(dataset).__name__}')
        d_rank, d_world = get_dist_info()
        self.rank = d_rank if rank is None else rank
        self.world_size = d_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f'rank {self.rank} outside world size {self.world_size}')
        self.dataset = dataset
        ends = list(dataset.cumulative_sizes)
        self.offsets = [0] + ends[:-1]
        self.sizes = [e - s for s, e in zip(self.offsets, ends)]
        if ratios is None:
            ratios = getattr(dataset, 'source_ratios', None)
            if ratios is None:
                ratios = [1.0] * len(self.sizes)
        ratios = [float(r) for r in ratios]
        if len(ratios) != len(self.sizes):
            raise ValueError(f'{len(ratios)} ratios for {len(self.sizes)} sources')
        for r, n in zip(ratios, self.sizes):
            if r > 0 and n == 0:
                raise ValueError('a source with a positive ratio is empty')
        if ratio_mode == 'share':
            weights = ratios
            default_n = sum(self.sizes)
        elif ratio_mode == 'repeat':
            weights = [r * n for r, n in zip(ratios, self.sizes)]
            default_n = int(round(sum(weights)))
        else:
            raise ValueError(f"ratio_mode must be 'share' or 'repeat', got {ratio_mode!r}")
        self.ratios, self.ratio_mode = ratios, ratio_mode
        self.num_samples_total = int(num_samples if num_samples is not None else default_n)
        if self.num_samples_total <= 0:
            raise ValueError('num_samples must be positive')
        self.counts = allocate(self.num_samples_total, weights)
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.round_up = round_up
        if round_up:
            self.num_samples = math.ceil(self.num_samples_total / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = math.ceil((self.num_samples_total - self.rank) / self.world_size)
            self.total_size = self.num_samples_total
        self.epoch = 0
        self.start = 0

    def epoch_indices(self) -> List[int]:
        """The global (all-rank) index sequence of the current epoch, before padding."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        parts, keys = [], []
        for s, (count, size, off) in enumerate(zip(self.counts, self.sizes, self.offsets)):
            if count == 0:
                continue
            reps = []
            while sum(len(r) for r in reps) < count:
                reps.append(torch.randperm(size, generator=g) if self.shuffle else
                            torch.arange(size))
            idx = torch.cat(reps)[:count] + off
            parts.append(idx)
            keys.append((torch.arange(count, dtype=torch.float64) + 0.5) / count)
        indices = torch.cat(parts)
        if self.shuffle:
            indices = indices[torch.randperm(len(indices), generator=g)]
        else:  # even interleaving: each source spread over the epoch
            order = torch.argsort(torch.cat(keys), stable=True)
            indices = indices[order]
        return indices.tolist()

    def sample_seeds(self) -> np.ndarray:
        """One augmentation seed per global position of the current epoch (all ranks).

        Returns:
            ``[total_size]`` int64 array drawn from ``(seed, epoch)``: independent of the world
            size, the number of loader workers and the resume point.
        """
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.integers(0, 2**31 - 1, size=self.total_size, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        if self.round_up and len(indices) < self.total_size:
            indices = (indices * (self.total_size // len(indices) + 1))[:self.total_size]
        seeds = self.sample_seeds()
        positions = range(self.rank, self.total_size, self.world_size)
        start, self.start = self.start, 0  # a start position applies to one pass only
        for pos in positions[start:]:
            yield SeededIndex(indices[pos], seeds[pos])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffle of the next epoch (called by mmengine's loops)."""
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Begin the next pass at this rank's ``start``-th index of the epoch (resume).

        Args:
            start: Number of this rank's indices of the current epoch already consumed,
                ``0 <= start <= len(self)``. It applies to the next ``__iter__`` only.
        """
        if not 0 <= start <= self.num_samples:
            raise ValueError(f'MultiSourceRatioSampler.set_start: start {start} outside '
                             f'[0, {self.num_samples}]')
        self.start = int(start)
