"""A toy training run on mmengine's real Runner for the engine tests (seconds, in-process).

Two sources of 5 and 6 samples under ``MultiSourceRatioSampler``; each sample's "augmentation"
draws from numpy's and python's global generators, the model's loss from torch's (as the
denoising noise and point sampling of QueryMeldNet do), so any generator that a resume does not
restore changes the final weights.
"""
import itertools
import random
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import ConcatDataset, Dataset


class ToySource(Dataset):
    """``size`` samples; counts its loads (num_workers=0 keeps the count in this process)."""

    def __init__(self, size: int, offset: int) -> None:
        self.size, self.offset = size, offset
        self.loads = 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        self.loads += 1
        jitter = np.random.rand(4) + random.random()  # the "augmentation"
        x = (torch.arange(4, dtype=torch.float32) + idx + self.offset
             + torch.from_numpy(jitter).float())
        return dict(inputs=x, index=torch.tensor(idx + self.offset))


class ToyModel(BaseModel):
    """A linear layer; the loss adds noise from torch's global generator."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, index=None, mode: str = 'tensor'):
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            noise = torch.randn_like(out)  # as denoising queries / point sampling
            return dict(loss=((out - noise) ** 2).mean())
        return out


class RecordHook(Hook):
    """Records each iteration's sample indices; raises at ``crash_at`` (1-based) if given."""

    def __init__(self, crash_at: Optional[int] = None) -> None:
        self.order: Dict[int, List[int]] = {}
        self.crash_at = crash_at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        k = runner.iter + 1
        self.order[k] = data_batch['index'].tolist()
        if k == self.crash_at:
            raise KeyboardInterrupt(f'crash after iteration {k}')


_RUN_IDS = itertools.count()


def make_dataset() -> ConcatDataset:
    return ConcatDataset([ToySource(5, 0), ToySource(6, 100)])


def build_runner(work_dir: str, dataset: ConcatDataset, hook: RecordHook, max_iters: int = 10,
                 resume: bool = False, loop: str = 'ResumableIterBasedTrainLoop',
                 checkpoint: str = 'AtomicCheckpointHook', interval: int = 2,
                 max_keep_ckpts: int = -1, num_workers: int = 0,
                 name: str = 'toy') -> Runner:
    """A Runner over the toy data with the project's loop and hooks (by name: replaceable)."""
    torch.manual_seed(0)  # the same initial weights in every run
    return Runner(
        model=ToyModel(), work_dir=work_dir,
        train_dataloader=dict(
            dataset=dataset, batch_size=3, num_workers=num_workers,
            persistent_workers=num_workers > 0,
            sampler=dict(type='MultiSourceRatioSampler', ratios=[1, 2]),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(type=loop, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(type=checkpoint, interval=interval, by_epoch=False,
                            max_keep_ckpts=max_keep_ckpts),
            train_state=dict(type='TrainStateHook'),
            weights_only_checkpoint=dict(type='WeightsOnlyCheckpointHook'),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[hook], randomness=dict(seed=3), resume=resume, default_scope='mmdet',
        log_level='WARNING', experiment_name=f'{name}_{next(_RUN_IDS)}')
