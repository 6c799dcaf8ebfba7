"""Steps of tools/analysis/gpu_check.sh after the install, in one process.

1. ``msda``: mmcv's CUDA multi-scale deformable attention (``MultiScaleDeformableAttnFunction``)
   against the PyTorch path (``multi_scale_deformable_attn_pytorch``) on random inputs, forward
   and the gradients of value, sampling locations and attention weights (fp32). Without CUDA, or
   with ``--msda-pytorch`` (mmcv's kernels not built), only the PyTorch path runs and the
   comparison is reported as skipped.
2. ``data``: the synthetic world (``tools/dataset_converters/make_synthetic_world.py``) at
   ``--size`` px.
3. ``config``: a training config that inherits ``--config`` (random init: every pretrained
   ``init_cfg`` and text-tower tag set to None, nothing downloads) and trains on all sources of
   the synthetic world with its pipelines rescaled to ``--size``, ``--iters`` iterations, no
   validation, no checkpoint.
4. ``train``: ``tools/train.py <config> [--amp]`` in this process (``runpy``), with a hook that
   times the iterations after the first ``--warmup`` (device-synchronised) and checks that every
   logged loss is finite; prints peak memory and iterations per second.

The last line printed is ``GPU_CHECK_RESULT {json}``.

Example::

    python tools/analysis/benchmark_gpucheck.py --size 1024 --iters 50 --amp \
        --config configs/querymeld/querymeld_r50_meld.py --work-dir /tmp/gpu_check
"""
import argparse
import json
import math
import os
import os.path as osp
import runpy
import sys
import time
import traceback
from typing import Dict, Optional

import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
RESULT: Dict[str, object] = {}


def log(msg: str) -> None:
    print(f'[gpu_check] {msg}', flush=True)


# ------------------------------------------------------------------------------------ 1. msda
def msda_check(device: str, tiny: bool, pytorch_only: bool) -> Dict[str, object]:
    """Compare mmcv's deformable-attention kernel with the PyTorch path (forward + grads)."""
    from mmcv.ops.multi_scale_deform_attn import (MultiScaleDeformableAttnFunction,
                                                  multi_scale_deformable_attn_pytorch)
    gen = torch.Generator().manual_seed(0)
    shapes = [(16, 16), (8, 8), (4, 4)] if tiny else [(128, 128), (64, 64), (32, 32)]
    bs, heads, dims, points, queries = 2, 8, 32, 4, (50 if tiny else 2000)
    spatial = torch.tensor(shapes, dtype=torch.long)
    start = torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])
    keys = int((spatial[:, 0] * spatial[:, 1]).sum())
    value = torch.randn(bs, keys, heads, dims, generator=gen)
    loc = torch.rand(bs, queries, heads, len(shapes), points, 2, generator=gen) * 1.2 - 0.1
    attn = torch.rand(bs, queries, heads, len(shapes), points, generator=gen)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    grad_out = torch.randn(bs, queries, heads * dims, generator=gen)
    tensors = [t.to(device) for t in (value, loc, attn, grad_out)]
    spatial, start = spatial.to(device), start.to(device)

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in tensors[:3]]
        out = fn(*leaves)
        out.backward(tensors[3])
        return [out.detach()] + [t.grad for t in leaves]

    ref = run(lambda v, s, a: multi_scale_deformable_attn_pytorch(v, spatial, s, a))
    result = dict(shapes=shapes, queries=queries, pytorch_finite=all(
        bool(torch.isfinite(t).all()) for t in ref))
    if device != 'cuda' or pytorch_only:
        result['compared'] = False
        result['reason'] = 'no CUDA device' if device != 'cuda' else \
            "mmcv's CUDA ops not built (PyTorch fallback)"
        return result
    cuda = run(lambda v, s, a: MultiScaleDeformableAttnFunction.apply(v, spatial, start, s, a, 64))
    names = ('output', 'grad_value', 'grad_sampling_locations', 'grad_attention_weights')
    diffs = {}
    for name, a, b in zip(names, cuda, ref):
        scale = float(b.abs().max())
        diffs[name] = dict(max_abs=float((a - b).abs().max()), ref_max=scale)
        # kernel vs grid_sample: same bilinear sampling; atomicAdd order in the gradients
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * max(scale, 1.0), msg=name)
    result.update(compared=True, diffs=diffs)
    return result


# ------------------------------------------------------------------------------ 2-3. data, cfg
def _rescale(node, factor: float):
    """Pipelines of the 128 px synthetic world rescaled by ``factor`` (in place)."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in ('scale', 'crop_size') and isinstance(value, (tuple, list)) and \
                    len(value) == 2 and all(isinstance(v, int) for v in value):
                node[key] = tuple(int(v * factor) for v in value)
            elif key == 'scales' and isinstance(value, (tuple, list)):
                node[key] = [int(v * factor) for v in value]
            elif key == 'max_size' and isinstance(value, int):
                node[key] = int(value * factor)
            else:
                _rescale(value, factor)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _rescale(value, factor)


def make_data(root: str, size: int, num_train: int) -> None:
    """The synthetic world at ``size`` px under ``root`` (skipped when already there)."""
    if osp.isfile(osp.join(root, '.complete')):
        log(f'data: reusing {root}')
        return
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(root, seed=0, num_train=num_train, num_val=1, img_size=size,
                             max_things=4)
    open(osp.join(root, '.complete'), 'w').close()


def _set_root(node, root: str) -> None:
    if isinstance(node, dict):
        value = node.get('data_root')
        if isinstance(value, str) and value.startswith('data/synthetic'):
            node['data_root'] = root + value[len('data/synthetic'):]
        for v in node.values():
            _set_root(v, root)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _set_root(v, root)


def write_config(path: str, model_config: str, data_root: str, size: int, iters: int,
                 workers: int, batch_size: int) -> str:
    """Write the training config (see the module docstring); returns its path."""
    from mmengine.config import Config
    from benchmark_models import _no_pretrained
    cfg = Config.fromfile(model_config)
    _no_pretrained(cfg.model)
    data = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'datasets', 'synthetic_world.py'))
    loader = data.train_dataloader
    _rescale(loader, size / 128)
    _set_root(loader, data_root.rstrip('/'))
    loader.update(batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0)
    cfg.train_dataloader = loader
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=10 ** 9)
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                                end=min(10, iters))]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, min(10, iters // 5)))
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 9,
                                        by_epoch=False, save_last=False)
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook', draw=False)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.custom_hooks = [dict(type='GpuCheckTimerHook')]
    cfg.auto_scale_lr = dict(enable=False, base_batch_size=16)
    cfg.dump(path)
    return path


# ------------------------------------------------------------------------------------ 4. train
def register_timer_hook(warmup: int) -> None:
    """Register ``GpuCheckTimerHook`` (in mmdet's registry, the configs' default scope)."""
    from mmdet.registry import HOOKS
    from mmengine.hooks import Hook

    @HOOKS.register_module(force=True)
    class GpuCheckTimerHook(Hook):
        """Wall time of the iterations after ``warmup`` (device-synchronised at both ends), the
        peak GPU memory and the finiteness of every logged loss.

        It runs first after each iteration (``HIGHEST``): mmengine's log processor resets
        torch's peak-memory counter whenever it logs, so a reading after it (or at the end of
        training) sees only the last few iterations.
        """
        priority = 'HIGHEST'

        def before_train(self, runner) -> None:
            RESULT.update(losses_finite=True, first_loss=None, last_loss=None)

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            it = runner.iter + 1
            if torch.cuda.is_available():
                RESULT['cuda_max_allocated_mb'] = max(RESULT.get('cuda_max_allocated_mb', 0.0),
                                                      torch.cuda.max_memory_allocated() / 2 ** 20)
            if it == warmup or it == runner.max_iters:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                RESULT[f't_iter_{it}'] = time.perf_counter()
            if outputs:
                values = {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                          for k, v in outputs.items() if 'loss' in k}
                if not all(math.isfinite(v) for v in values.values()):
                    RESULT['losses_finite'] = False
                    RESULT.setdefault('non_finite', sorted(
                        k for k, v in values.items() if not math.isfinite(v)))
                if RESULT['first_loss'] is None:
                    RESULT['first_loss'] = values.get('loss')
                RESULT['last_loss'] = values.get('loss')

        def after_train(self, runner) -> None:
            start, end = RESULT.get(f't_iter_{warmup}'), RESULT.get(f't_iter_{runner.max_iters}')
            if start is not None and end is not None and end > start:
                RESULT['iters_per_s'] = (runner.max_iters - warmup) / (end - start)
            RESULT['iters'] = runner.iter


def train(config: str, work_dir: str, amp: bool, msda_pytorch: bool, warmup: int) -> None:
    """Run tools/train.py in this process with the timer hook registered."""
    if msda_pytorch:
        import mmcv.ops.multi_scale_deform_attn as msda
        msda.IS_CUDA_AVAILABLE = False  # mmcv's CUDA ops missing: use the PyTorch path on GPU
    import mmquerymeld  # noqa: F401
    register_timer_hook(warmup)
    argv = [osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work_dir]
    argv += ['--amp'] if amp else []
    old_argv, sys.argv = sys.argv, argv
    try:
        runpy.run_path(argv[0], run_name='__main__')
    finally:
        sys.argv = old_argv


def peak_memory() -> Dict[str, float]:
    import resource
    out = dict(cpu_max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if torch.cuda.is_available():  # (the allocated peak of training: GpuCheckTimerHook)
        out['cuda_max_reserved_mb'] = torch.cuda.max_memory_reserved() / 2 ** 20
    return out


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default=osp.join(REPO, 'configs', 'querymeld',
                                                'querymeld_r50_meld.py'))
    p.add_argument('--size', type=int, default=1024)
    p.add_argument('--iters', type=int, default=50)
    p.add_argument('--warmup', type=int, default=10, help='iterations excluded from the rate')
    p.add_argument('--batch-size', type=int, default=2)
    p.add_argument('--workers', type=int, default=4)
    p.add_argument('--num-train', type=int, default=4, help='synthetic images per family')
    p.add_argument('--amp', action='store_true')
    p.add_argument('--msda-pytorch', action='store_true',
                   help="mmcv's CUDA ops are not built: deformable attention on the PyTorch path")
    p.add_argument('--tiny-msda', action='store_true', help='small deformable-attention check')
    p.add_argument('--work-dir', default='/tmp/gpu_check')
    args = p.parse_args(argv)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    RESULT.update(device=torch.cuda.get_device_name() if device == 'cuda' else 'cpu',
                  torch=torch.__version__, amp=args.amp, size=args.size,
                  msda_path='pytorch' if args.msda_pytorch or device != 'cuda' else 'cuda kernel')
    os.makedirs(args.work_dir, exist_ok=True)
    status = 0
    steps = [
        ('msda', lambda: RESULT.update(msda=msda_check(device, args.tiny_msda,
                                                       args.msda_pytorch))),
        ('data', lambda: make_data(osp.join(args.work_dir, f'data{args.size}'), args.size,
                                   args.num_train)),
        ('config', lambda: RESULT.update(config=write_config(
            osp.join(args.work_dir, 'gpu_check_cfg.py'), args.config,
            osp.join(args.work_dir, f'data{args.size}'), args.size, args.iters, args.workers,
            args.batch_size))),
        ('train', lambda: train(RESULT['config'], osp.join(args.work_dir, 'train'), args.amp,
                                args.msda_pytorch, min(args.warmup, args.iters - 1))),
    ]
    for name, step in steps:
        start = time.perf_counter()
        log(f'step {name} ...')
        try:
            step()
            RESULT[f'{name}_s'] = round(time.perf_counter() - start, 1)
            log(f'step {name}: ok in {RESULT[name + "_s"]} s')
        except Exception:  # noqa: B902  (report the step, go on where the next can run)
            status = 1
            RESULT[f'{name}_error'] = traceback.format_exc(limit=-8)  # innermost frames
            log(f'step {name}: FAILED\n{RESULT[name + "_error"]}')
            if name in ('data', 'config'):
                break
    RESULT.update(peak_memory())
    RESULT.update(ok=status == 0 and RESULT.get('losses_finite', False) and
                  RESULT.get('iters') == args.iters)
    for key in [k for k in RESULT if k.startswith('t_iter_')]:
        RESULT.pop(key)
    print('GPU_CHECK_RESULT ' + json.dumps(RESULT, default=str), flush=True)
    return 0 if RESULT['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
