"""DDP with a task split (issue 9, item 9): two CPU processes (gloo), rank 0 reads only box-only
detection samples (no mask anywhere), rank 1 only referring samples.

Parts of the model get no real gradient on one rank (the mask branches on the box-only rank:
mask embedding, mask features, every mask loss and cost is gated off). Under mmengine's default
``find_unused_parameters=False`` DDP expects every parameter's gradient on every rank in every
iteration; a term that leaves the graph on one rank raises "Expected to have finished reduction
in the prior iteration" at the next iteration (or hangs the other rank). The model keeps every
gated term in the graph with zero weight, so this trains.
"""
import importlib.util
import os
import os.path as osp
import re
import socket
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'tests', 'data', 'configs', 'querymeld_ddp_task_split.py')
ITERS = 3  # train_cfg.max_iters of the config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_task_split(root: str, cfg: str = CFG, extra_paths: Sequence[str] = (),
                   timeout: int = 300) -> Tuple[subprocess.CompletedProcess, str]:
    """Generate a small synthetic world under ``root`` and train ``cfg`` on 2 CPU processes.

    Returns:
        tuple: the finished process and its stdout + stderr.
    """
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(osp.join(root, 'data', 'synthetic'), seed=3, num_train=2,
                             num_val=1)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([REPO, osp.join(REPO, 'tests', 'data'), *extra_paths,
                                         env.get('PYTHONPATH', '')])
    env['OMP_NUM_THREADS'] = '1'
    env['PORT'] = str(_free_port())
    env['PYTHON'] = sys.executable
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2', '--work-dir',
           osp.join(root, 'work')]
    # data_root is relative ('data/synthetic/'): run from the folder holding it; a hang (a rank
    # waiting for a reduction the other never starts) ends at the timeout
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc, proc.stdout + proc.stderr


def tasks_per_rank(out: str) -> Dict[str, List[Tuple[int, str, int]]]:
    """``TaskSplitLogHook`` lines: per rank, ``(iteration, tasks, valid masks)``."""
    seen = re.findall(r'TASK_SPLIT rank=(\d) iter=(\d+) tasks=(\S+) valid_masks=(\d+)', out)
    return {r: [(int(i), t, int(m)) for rr, i, t, m in seen if rr == r] for r in '01'}


def test_ddp_box_only_rank_and_referring_rank_train(tmp_path):
    proc, out = run_task_split(str(tmp_path))
    assert proc.returncode == 0, out[-6000:]
    assert 'Distributed training: True' in out
    # mmengine's default: DDP does not search for unused parameters
    assert 'find_unused_parameters=False' in out
    assert 'Expected to have finished reduction' not in out
    # the split really happened: rank 0 box-only detection, rank 1 referring with masks
    by_rank = tasks_per_rank(out)
    assert [i for i, _, _ in by_rank['0']] == list(range(ITERS)), by_rank
    assert [i for i, _, _ in by_rank['1']] == list(range(ITERS)), by_rank
    assert all(t == 'detection' and m == 0 for _, t, m in by_rank['0']), by_rank['0']
    assert all(t == 'referring' and m > 0 for _, t, m in by_rank['1']), by_rank['1']
    assert f'Iter(train) [{ITERS}/{ITERS}]' in out
    losses = re.findall(rf'Iter\(train\) \[\d/{ITERS}\].*? loss: (\S+)', out)
    assert len(losses) == ITERS and all(torch.isfinite(torch.tensor(float(v))) for v in losses)
    ckpt = torch.load(str(tmp_path / 'work' / f'iter_{ITERS}.pth'), map_location='cpu')
    assert any(k.startswith('head.mask_embed') for k in ckpt['state_dict'])


def _model_fixtures():
    """The model tests' sample builders (tests/test_models/conftest.py), loaded by path."""
    path = osp.join(REPO, 'tests', 'test_models', 'conftest.py')
    spec = importlib.util.spec_from_file_location('_qm_model_fixtures', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('case', ['detection_box_only', 'semantic', 'referring', 'foreground',
                                  'no_targets'])
def test_every_trainable_parameter_is_in_the_graph_of_any_single_task_batch(case):
    """The invariant the DDP run relies on, for batches a rank may see alone (fast, in process):
    after backward every trainable parameter has a gradient tensor (zero where its terms are
    gated: masks of box-only targets, boxes of semantic targets, denoising without targets),
    i.e. no parameter is left out of the graph. ``max_dn_targets=1`` keeps the denoising cap on.
    """
    fx = _model_fixtures()
    torch.set_num_threads(1)
    model = fx.build_tiny_model(denoising=dict(num_dn_queries=4, label_noise_ratio=0.2,
                                               box_noise_scale=0.4, max_dn_targets=1))
    model.train()
    task = {'detection_box_only': 'detection', 'no_targets': 'instance'}.get(case, case)
    batch = fx.collate([fx.make_sample(task, 64, seed) for seed in (0, 1)])
    if case == 'no_targets':
        for sample in batch['data_samples']:
            sample.gt_instances = sample.gt_instances[:0]
    data = model.data_preprocessor(batch, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) > 100
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f'{case}: parameters out of the graph (DDP would fail): {missing[:10]}'
