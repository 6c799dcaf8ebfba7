"""A test-only hook: saves the gradients of the first optimizer step (one process or DDP).

The gradients are read inside ``optim_wrapper.step`` of iteration 0, i.e. after the backward (and,
under DDP, after the gradient all-reduce) and before clipping and the optimizer update, so the
optimizer step does not matter. Every rank also writes what it trained on (image paths, number of
gt) so a test can check that one process with batch 2 and two processes with batch 1 each saw the
same two samples.

With ``fixed_points=True`` the two random draws of the mask losses become layout-independent:
the matcher's uniform points (one draw per image and level, taken in batch order from the global
generator) and the loss's importance-sampling candidates (one ``[M, 3P, 2]`` draw over all masks of
a level) are drawn per mask / per image from a generator reseeded with a constant, so a sample gets
the same points whether it is the 2nd image of a batch or the 1st image of rank 1.
"""
import json
from typing import Optional

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS

POINT_SEED = 1234


def _install_fixed_points() -> None:
    """Make the matcher's and the mask loss's random points a function of nothing (see above)."""
    import mmquerymeld.models.losses.matching as matching
    import mmquerymeld.models.losses.point_mask_loss as pml
    if getattr(pml, '_grad_probe_fixed', False):
        return
    orig_call = matching.PointSampledHungarianMatcher.__call__
    orig_uncertain = pml.get_uncertain_point_coords_with_randomness

    def call(self, *args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(POINT_SEED)
            return orig_call(self, *args, **kwargs)

    def uncertain(mask_preds, labels, *args, **kwargs):
        rows = []
        for i in range(mask_preds.shape[0]):  # one mask at a time, each from the same seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(POINT_SEED)
                rows.append(orig_uncertain(mask_preds[i:i + 1],
                                           None if labels is None else labels[i:i + 1],
                                           *args, **kwargs))
        return torch.cat(rows) if rows else orig_uncertain(mask_preds, labels, *args, **kwargs)

    matching.PointSampledHungarianMatcher.__call__ = call
    pml.get_uncertain_point_coords_with_randomness = uncertain
    pml._grad_probe_fixed = True


@HOOKS.register_module()
class GradProbeHook(Hook):
    """Save ``{name: grad}`` of the first step on rank 0 and per-rank sample info as JSON.

    Args:
        out_file: ``torch.save`` target of rank 0's gradients (``None`` for parameters without
            one); each rank ``r`` writes ``{out_file}.rank{r}.json``.
        fixed_points: Make point sampling layout-independent (module docstring).
    """

    priority = 'VERY_HIGH'

    def __init__(self, out_file: str, fixed_points: bool = True) -> None:
        self.out_file = out_file
        if fixed_points:
            _install_fixed_points()

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        if runner.iter != 0:
            return
        rank, world = get_rank(), get_world_size()
        samples = data_batch['data_samples']
        info = dict(world_size=world,
                    img_paths=[s.metainfo.get('img_path') for s in samples],
                    num_gt=[len(s.gt_instances) for s in samples])
        with open(f'{self.out_file}.rank{rank}.json', 'w') as f:
            json.dump(info, f)
        wrapper = runner.optim_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        orig_step = wrapper.step

        def step(**kwargs):
            if rank == 0:
                torch.save({n: None if p.grad is None else p.grad.detach().clone()
                            for n, p in model.named_parameters() if p.requires_grad},
                           self.out_file)
            del wrapper.step  # back to the class's method for the next iterations
            return orig_step(**kwargs)

        wrapper.step = step
