"""Non-finite losses in tools/train.py (issue 12, item 3).

The tiny QueryMeldNet trains on one synthetic image; a test-only hook (``PoisonLossHook``) adds
NaN to the output of the criterion's dice-loss modules in iterations 3, 6, 7 and 8, so the real
loss path yields non-finite ``*loss_dice`` terms while every other term stays finite. With
``max_consecutive_nonfinite=3`` the step of iteration 3 is skipped and logged, training goes on,
and the third non-finite step in a row (iteration 8) stops the run before its checkpoint.
"""
import math
import os.path as osp
import socket
import subprocess
import sys

import torch

from kill_resume_probe import write_probe_config
from train_env import REPO, train_env

ONE_IMAGE_CFG = osp.join(REPO, 'tests', 'data', 'configs', 'querymeld_tiny_one_image.py')


def test_nonfinite_loss_skips_the_step_and_stops_after_n(tmp_path):
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(str(tmp_path / 'data' / 'synthetic'), seed=0, num_train=2,
                             num_val=1, img_size=64)
    cfg = write_probe_config(
        str(tmp_path / 'cfg.py'), ONE_IMAGE_CFG,
        [dict(type='PoisonLossHook', iters=[3, 6, 7, 8], term='loss_dice',
              out_dir=str(tmp_path))])
    work_dir = str(tmp_path / 'work')
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg, '--work-dir', work_dir,
           '--cfg-options', 'train_cfg.max_iters=10', 'default_hooks.checkpoint.interval=2',
           'default_hooks.nonfinite_loss.max_consecutive_nonfinite=3']
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=train_env(), capture_output=True,
                          text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert 'NonFiniteLossError: 3 consecutive training steps had a non-finite loss' in out, \
        out[-4000:]
    assert 'max_consecutive_nonfinite=3, last at iteration 8' in out

    # iteration 3: logged with the terms and the sample, and its step skipped
    line = next(ln for ln in out.splitlines() if 'Non-finite loss at iteration 3' in ln)
    assert 'loss_dice' in line and 'd0.loss_dice' in line and 'loss_cls' not in line
    assert 'syn_coco_panoptic' in line and 'coco/train2017/' in line
    assert '(1 in a row, 1 in this run)' in line
    assert 'Non-finite loss at iteration 8' in out and '(3 in a row, 4 in this run)' in out
    before = torch.load(str(tmp_path / 'before_rank0.pth'))
    after = torch.load(str(tmp_path / 'after_rank0.pth'))
    after_next = torch.load(str(tmp_path / 'next_rank0.pth'))
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step in iteration 3
    assert any(not torch.equal(after[k], after_next[k]) for k in after)  # training went on

    # the run stopped before iteration 8's checkpoint; the last one holds finite weights
    assert not osp.exists(osp.join(work_dir, 'iter_8.pth'))
    last = open(osp.join(work_dir, 'last_checkpoint')).read()
    assert last.endswith('iter_6.pth')
    ckpt = torch.load(last)
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values()
               if v.is_floating_point())
    for state in ckpt['optimizer']['state'].values():
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))
    # the smoothed log of the iterations after the skipped one carries no NaN
    iter4 = next(ln for ln in out.splitlines() if 'Iter(train) [ 4/10]' in ln
                 or 'Iter(train) [4/10]' in ln)
    assert 'nan' not in iter4.lower() and math.isfinite(float(iter4.split(' loss: ')[1].split()[0]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_nonfinite_on_one_rank_skips_the_step_on_both(tmp_path):
    """2 CPU processes (tools/dist_train.sh): rank 1's loss is NaN in iteration 2, rank 0's is
    finite; both skip the step (NonFiniteGuardDDP agrees over the ranks), nobody hangs in the
    gradient all-reduce, and training goes on."""
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(str(tmp_path / 'data' / 'synthetic'), seed=0, num_train=2,
                             num_val=1, img_size=64)
    cfg = write_probe_config(
        str(tmp_path / 'cfg.py'), ONE_IMAGE_CFG,
        [dict(type='PoisonLossHook', iters=[2], term='loss_dice', out_dir=str(tmp_path),
              rank=1)])
    env = train_env()
    env['PORT'] = str(_free_port())
    env['PYTHON'] = sys.executable
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2', '--work-dir',
           str(tmp_path / 'work'), '--cfg-options', 'train_cfg.max_iters=3']
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert 'Non-finite loss at iteration 2' in out and '(on another rank)' in out
    for rank in (0, 1):
        before = torch.load(str(tmp_path / f'before_rank{rank}.pth'))
        after = torch.load(str(tmp_path / f'after_rank{rank}.pth'))
        after_next = torch.load(str(tmp_path / f'next_rank{rank}.pth'))
        assert all(torch.equal(before[k], after[k]) for k in before), rank
        assert any(not torch.equal(after[k], after_next[k]) for k in after), rank
