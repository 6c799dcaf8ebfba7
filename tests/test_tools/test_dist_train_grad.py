"""One process equals two (issue 12, item 6): the first step's gradients of QueryMeldNet's demo
config on the synthetic world are the same with 2 CPU processes (gloo, ``tools/dist_train.sh``)
of batch 1 each as with 1 process of batch 2.

Why they should be equal: every loss term is a sum over the batch's matched pairs / points divided
by a count (gt, gt with a box, gt with a mask) that ``QueryMeldCriterion._avg_count`` averages over
the ranks (mmdet ``reduce_mean``, as Mask2Former's ``num_total_masks``). On rank ``r`` the loss is
``S_r / (C / 2)`` with ``C = C_0 + C_1``; DDP averages the ranks' gradients, ``(g(S_0) + g(S_1)) /
C``: the single process's ``g(S_0 + S_1) / C``. A per-rank normaliser would give
``(g(S_0) / C_0 + g(S_1) / C_1) / 2`` instead, different whenever ``C_0 != C_1`` (asserted below
for the two samples used, so the test sees such a defect).

What differs between the layouts by design, and is held equal here:

- Batch norm statistics (per rank vs per batch): the backbone's BN is frozen (``norm_eval``).
- Padding: a batch is padded to its largest image, so a lone image may get a smaller frame than in
  a pair; ``BatchFixedSizePad`` gives every batch the 128 x 128 frame of the synthetic world.
- Denoising (Mask DINO): the group count is ``num_dn_queries // (largest target count in the
  batch)`` and the noise of the batch's 2nd image follows the 1st image's draws from the global
  generator: off (``denoising=None``).
- Point sampling: the matcher's uniform points and the mask loss's importance-sampling candidates
  are drawn from the global generator per batch; ``GradProbeHook(fixed_points=True)`` draws them
  per image / per mask from a constant seed (tests/data/grad_probe.py).
- Data: the sampler's seed is fixed; ``MultiSourceRatioSampler`` gives position 0 of the epoch to
  rank 0 and position 1 to rank 1, each with its per-sample augmentation seed (asserted: same
  image paths and gt counts).

Tolerance: ``rtol=1e-3`` / ``atol=1e-5 * max|g|`` per parameter plus a total relative L2 error
below ``1e-4``. The remaining differences are float32 summation order (convolution and matmul
weight gradients sum over the batch inside one kernel vs over two processes plus the all-reduce,
the loss sum is ``(a + b) / C`` vs ``a / (C/2)`` halved), about 1e-7 relative per add (measured:
total relative L2 error 5e-7, worst parameter 1e-6); a per-rank normaliser (mutation: no
``reduce_mean`` in ``_avg_count``) changed ``backbone.conv1.weight``'s gradient by up to 1.37 in
99.8 % of its elements.
"""
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys

import pytest
import torch

from train_env import REPO, train_env

DEMO_CFG = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _write_cfg(root: str, name: str, out_file: str) -> str:
    path = osp.join(root, f'grad_cfg_{name}.py')
    with open(path, 'w') as f:
        f.write(
            f"_base_ = [{DEMO_CFG!r}]\n"
            "custom_imports = dict(imports=['mmquerymeld', 'grad_probe'],\n"
            "                      allow_failed_imports=False)\n"
            f"custom_hooks = [dict(type='GradProbeHook', out_file={out_file!r})]\n"
            "model = dict(\n"
            "    data_preprocessor=dict(\n"
            "        batch_augments=[dict(type='BatchFixedSizePad', size=(128, 128))]),\n"
            "    backbone=dict(norm_eval=True),\n"
            "    head=dict(denoising=None))\n"
            "train_cfg = dict(max_iters=1)\n"
            "train_dataloader = dict(num_workers=0, persistent_workers=False,\n"
            "                        sampler=dict(seed=1))\n"
            "default_hooks = dict(checkpoint=dict(interval=1000, save_last=False),\n"
            "                     logger=dict(interval=1))\n")
    return path


@pytest.fixture(scope='module')
def grads(tmp_path_factory):
    """The first step's gradients and sample info of both layouts (the two runs at once)."""
    root = str(tmp_path_factory.mktemp('grad'))
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(osp.join(root, 'data', 'synthetic'), seed=1, num_train=4,
                             num_val=1)
    runs = {}
    for name, nproc, batch in (('single', 1, 2), ('dist', 2, 1)):
        out_file = osp.join(root, f'{name}_grads.pth')
        cfg = _write_cfg(root, name, out_file)
        common = ['--work-dir', osp.join(root, f'work_{name}'), '--cfg-options',
                  f'train_dataloader.batch_size={batch}']
        env = train_env()
        if nproc == 1:
            cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg, *common]
        else:
            cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2', *common]
            env.update(PORT=str(_free_port()), PYTHON=sys.executable)
        # the config's data_root is relative ('data/synthetic/'): run from the folder holding it
        log = open(osp.join(root, f'{name}.log'), 'w+')
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        runs[name] = (proc, log, out_file, nproc)
    res = {}
    try:
        for name, (proc, log, out_file, nproc) in runs.items():
            rc = proc.wait(timeout=600)
            log.seek(0)
            out = log.read()
            tb = out.find('Traceback')
            assert rc == 0, f'{name}\n{out[tb:tb + 4000] if tb >= 0 else ""}\n{out[-3000:]}'
            if nproc == 2:
                assert 'Distributed training: True' in out
            infos = []
            for r in range(nproc):
                with open(f'{out_file}.rank{r}.json') as f:
                    infos.append(json.load(f))
            res[name] = dict(grads=torch.load(out_file, map_location='cpu'), infos=infos)
    finally:
        for proc, log, _, _ in runs.values():
            if proc.poll() is None:  # a failed or timed-out run: no trainer outlives the test
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
    return res


def test_same_samples_in_both_layouts(grads):
    single, dist = grads['single']['infos'], grads['dist']['infos']
    assert len(single) == 1 and single[0]['world_size'] == 1
    assert [i['world_size'] for i in dist] == [2, 2]
    assert single[0]['img_paths'] == dist[0]['img_paths'] + dist[1]['img_paths']
    assert single[0]['num_gt'] == dist[0]['num_gt'] + dist[1]['num_gt']
    # different gt counts per rank: a normaliser that is not averaged over ranks would show
    assert dist[0]['num_gt'] != dist[1]['num_gt'], dist


def test_two_processes_batch_one_equal_one_process_batch_two(grads):
    single, dist = grads['single']['grads'], grads['dist']['grads']
    assert set(single) == set(dist) and len(single) > 100
    with_grad = [n for n, g in single.items() if g is not None and bool(g.abs().sum() > 0)]
    assert len(with_grad) > 0.5 * len(single), 'most parameters must get a gradient'
    num, den = 0.0, 0.0
    for name, g1 in single.items():
        g2 = dist[name]
        if g1 is None or g2 is None:  # both None, or one None and the other all zeros
            other = g2 if g1 is None else g1
            assert other is None or not bool(other.any()), name
            continue
        scale = float(g1.abs().max())
        torch.testing.assert_close(g2, g1, rtol=1e-3, atol=1e-5 * scale + 1e-12,
                                   msg=lambda m, n=name: f'{n}: {m}')
        num += float((g2.double() - g1.double()).pow(2).sum())
        den += float(g1.double().pow(2).sum())
    assert den > 0
    assert (num / den)**0.5 < 1e-4, (num / den)**0.5
