"""Test-only hooks for the kill / resume and non-finite-loss tests of tools/train.py.

Imported by the training subprocess through ``custom_imports`` (``tests/test_tools`` is on its
``PYTHONPATH``, see ``train_env.py``).
"""
import json
import os
import os.path as osp
from typing import List, Optional

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS
from mmquerymeld.utils.atomic import atomic_write


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class DataOrderProbeHook(Hook):
    """Write ``<out_dir>/iter_<k>.json`` after iteration ``k`` (1-based): the batch's samples
    (source, path, flip, shape: what the augmentation chose), the process id, and how many
    batches this process's loader iterator has fetched so far (1 in the first resumed iteration
    when nothing was replayed)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        samples = []
        for s in data_batch['data_samples']:
            m = s.metainfo
            samples.append([m.get('source'), osp.basename(m.get('img_path', '')),
                            bool(m.get('flip')), list(m.get('img_shape', ()))])
        it = getattr(runner.train_loop, 'dataloader_iterator', None)
        record = dict(iter=runner.iter + 1, pid=os.getpid(), samples=samples,
                      fetched=getattr(it, 'fetched', None))
        atomic_write(osp.join(self.out_dir, f'iter_{runner.iter + 1}.json'), json.dumps(record))


@HOOKS.register_module()
class PoisonLossHook(Hook):
    """Make one loss term NaN in the given iterations (1-based) and record the weights around
    the first one.

    A forward hook on the criterion's loss modules whose name ends with ``term`` (e.g.
    ``loss_dice``) adds NaN to their output during those iterations only (on ``rank`` only, if
    given): the model's real loss path produces a non-finite term, everything else stays finite.
    ``<out_dir>/before_rank<r>.pth`` / ``after_rank<r>.pth``: the trainable parameters before and
    after the first poisoned iteration; ``next_rank<r>.pth``: after the iteration that follows.
    """

    def __init__(self, iters: List[int], term: str, out_dir: str,
                 rank: Optional[int] = None) -> None:
        self.iters = sorted(iters)
        self.term = term
        self.out_dir = out_dir
        self.rank = rank  # poison on this rank only (None: every rank)
        self.handles: list = []

    def _file(self, name: str) -> str:
        return osp.join(self.out_dir, f'{name}_rank{get_rank()}.pth')

    def _params(self, runner) -> dict:
        return {k: v.detach().clone() for k, v in _model(runner).named_parameters()
                if v.requires_grad}

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        k = runner.iter + 1
        if k == self.iters[0]:
            torch.save(self._params(runner), self._file('before'))
        if k not in self.iters or self.rank not in (None, get_rank()):
            return
        for name, module in _model(runner).named_modules():
            if name.endswith(self.term):
                self.handles.append(module.register_forward_hook(
                    lambda mod, args, out: out + float('nan')))
        assert self.handles, f'no module named *{self.term}'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        k = runner.iter + 1
        for h in self.handles:
            h.remove()
        self.handles = []
        if k == self.iters[0]:
            torch.save(self._params(runner), self._file('after'))
        if k == self.iters[0] + 1:
            torch.save(self._params(runner), self._file('next'))


def write_probe_config(path: str, base_cfg: str, hooks: List[dict],
                       extra: Optional[str] = None) -> str:
    """A config inheriting ``base_cfg`` that imports this module and adds ``hooks``."""
    text = (f'_base_ = [{base_cfg!r}]\n'
            "custom_imports = dict(imports=['mmquerymeld', 'kill_resume_probe'], "
            'allow_failed_imports=False)\n'
            f'custom_hooks = {hooks!r}\n' + (extra or ''))
    with open(path, 'w') as f:
        f.write(text)
    return path
