"""tools/train.py: training, checkpoint/resume under torch's weights_only default, torchrun launch."""
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from train_env import REPO, train_env

TINY_CFG = osp.join(REPO, 'tests', 'data', 'configs', 'tiny_retinanet_coco.py')


def _run(cmd, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=REPO, env=train_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f'{cmd}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}'
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_resume_restores_model_and_optimizer(tmp_path, tiny_coco_root):
    work_dir = str(tmp_path / 'work')
    common = ['--work-dir', work_dir, '--cfg-options',
              f'train_dataloader.dataset.data_root={tiny_coco_root}/']
    # phase 1: 3 iterations, checkpoint at iteration 3
    _run([sys.executable, 'tools/train.py', TINY_CFG, *common, 'train_cfg.max_iters=3'])
    ckpt_path = osp.join(work_dir, 'iter_3.pth')
    assert osp.isfile(ckpt_path)

    # phase 2: resume (auto: latest checkpoint in work_dir) and probe the state at iteration 4
    probe_cfg = tmp_path / 'probe_cfg.py'
    probe_out = tmp_path / 'probe.pth'
    probe_cfg.write_text(
        f"_base_ = [{TINY_CFG!r}]\n"
        "custom_imports = dict(imports=['mmquerymeld', 'state_probe'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='StateProbeHook', at_iter=3, out_file={str(probe_out)!r})]\n")
    proc = _run([sys.executable, 'tools/train.py', str(probe_cfg), *common,
                 'train_cfg.max_iters=5', '--resume'])
    assert 'resumed epoch: 0, iter: 3' in (proc.stdout + proc.stderr)

    # the project's checkpoints load under torch's default (weights_only=True) loader
    ckpt = torch.load(ckpt_path, map_location='cpu')
    probe = torch.load(str(probe_out), map_location='cpu')
    assert probe['iter'] == 3
    saved = ckpt['state_dict']
    assert set(saved) == set(probe['state_dict'])
    for k, v in saved.items():
        assert torch.equal(v, probe['state_dict'][k]), k
    saved_opt, probe_opt = ckpt['optimizer'], probe['optimizer']
    assert saved_opt['param_groups'][0]['lr'] == pytest.approx(probe_opt['param_groups'][0]['lr'])
    assert set(saved_opt['state']) == set(probe_opt['state']) and len(saved_opt['state']) > 0
    for idx, state in saved_opt['state'].items():
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(state[key], probe_opt['state'][idx][key]), (idx, key)
    # and phase 2 went on to iteration 5
    assert osp.isfile(osp.join(work_dir, 'last_checkpoint'))


class NotAllowListed:
    """An arbitrary class: torch.load's default must refuse to rebuild it."""


def test_weights_only_default_still_guards_arbitrary_pickles(tmp_path):
    """The allow-list is narrow: unknown globals are still refused by torch.load's default."""
    import mmquerymeld  # noqa: F401  (nothing it does may relax torch.load)

    path = tmp_path / 'evil.pth'
    torch.save({'obj': NotAllowListed()}, str(path))
    with pytest.raises(Exception, match='(?i)weights_only|unsupported global'):
        torch.load(str(path))


def test_dist_train_querymeld_on_synthetic_world(tmp_path):
    """tools/dist_train.sh: two CPU processes (gloo) train the demo config on a small world
    under DDP (denoising on) and write the checkpoint (once a RetinaNet run of its own)."""
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(str(tmp_path / 'data' / 'synthetic'), seed=1, num_train=4,
                             num_val=2)
    env = train_env()
    env['PORT'] = str(_free_port())
    env['PYTHON'] = sys.executable
    cfg = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
    work_dir = str(tmp_path / 'work')
    cmd = ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg, '2', '--work-dir', work_dir,
           '--cfg-options', 'train_cfg.max_iters=12', 'default_hooks.checkpoint.interval=12',
           'default_hooks.logger.interval=4', 'train_dataloader.num_workers=0',
           'train_dataloader.persistent_workers=False']
    # the config's data_root is relative ('data/synthetic/'): run from the folder holding it
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert 'Distributed training: True' in out
    assert "'backend': 'gloo'" in out or 'backend=gloo' in out or "backend='gloo'" in out
    assert 'world_size: 2' in out or 'GPU number: 2' in out or 'World size: 2' in out, out[-3000:]
    assert 'Iter(train) [12/12]' in out
    assert osp.isfile(osp.join(work_dir, 'iter_12.pth'))
