"""Test-only sampler: each rank reads one source of a ``MultiSourceDataset`` (DDP task split).

Used by ``tests/test_tools/test_ddp_task_split.py`` (imported through ``custom_imports`` of
``tests/data/configs/querymeld_ddp_task_split.py``): rank ``r`` draws only from source
``r % num_sources``, so one rank sees only box-only detection samples and the other only
referring samples, and parts of the model get no gradient on one of them.
"""
from typing import Iterator, Optional

import torch
from mmdet.registry import DATA_SAMPLERS, HOOKS
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from torch.utils.data import Sampler


@DATA_SAMPLERS.register_module()
class RankSourceSampler(Sampler):
    """Indices of source ``rank % num_sources`` only, shuffled with ``seed + epoch``.

    Args:
        dataset: A ``ConcatDataset``-like dataset (``cumulative_sizes``).
        seed: Base seed of the per-epoch shuffle.
    """

    def __init__(self, dataset, seed: int = 0, rank: Optional[int] = None) -> None:
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        ends = list(dataset.cumulative_sizes)
        starts = [0] + ends[:-1]
        rank = get_dist_info()[0] if rank is None else rank
        source = rank % len(ends)
        self.start, self.size = starts[source], ends[source] - starts[source]
        self.seed, self.epoch = seed, 0

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter((self.start + torch.randperm(self.size, generator=g)).tolist())

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle per epoch (mmengine's loops call it)."""
        self.epoch = epoch


@HOOKS.register_module()
class TaskSplitLogHook(Hook):
    """Print each rank's tasks and mask validity per iteration (the test reads them back)."""

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        samples = data_batch['data_samples']
        tasks = sorted({s.metainfo['task'] for s in samples})
        masks = sum(int(s.gt_instances.mask_valid.sum()) for s in samples)
        rank = get_dist_info()[0]
        print(f'TASK_SPLIT rank={rank} iter={runner.iter} tasks={",".join(tasks)} '
              f'valid_masks={masks}', flush=True)
