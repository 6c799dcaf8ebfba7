"""tools/train.py --amp on CPU: bf16 autocast end to end (issue 9, mixed precision)."""
import glob
import json
import math
import os.path as osp
import subprocess
import sys

import numpy as np

from train_env import REPO, train_env

ONE_IMAGE_CFG = osp.join(REPO, 'tests', 'data', 'configs', 'querymeld_tiny_one_image.py')


def test_train_amp_cpu_bf16_one_image(tmp_path):
    """20 iterations of the tiny model on one 64 px image with ``--amp``: the decoder computes in
    bf16, the deformable attention in fp32, every loss is finite and the loss goes down."""
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(str(tmp_path / 'data' / 'synthetic'), seed=0, num_train=2,
                             num_val=1, img_size=64)
    probe_out = tmp_path / 'dtypes.json'
    probe_cfg = tmp_path / 'amp_probe_cfg.py'
    probe_cfg.write_text(
        f'_base_ = [{ONE_IMAGE_CFG!r}]\n'
        "custom_imports = dict(imports=['mmquerymeld', 'amp_probe'], allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='AmpDtypeProbeHook', out_file={str(probe_out)!r})]\n")
    work_dir = tmp_path / 'work'
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), str(probe_cfg), '--amp',
           '--work-dir', str(work_dir)]
    # the config's data_root is relative ('data/synthetic/'): run from the folder holding it
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=train_env(cpu_only=True),
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    # --amp without CUDA chose the bf16 wrapper (the config the run used is dumped)
    used_cfgs = glob.glob(str(work_dir / '*' / 'vis_data' / 'config.py'))
    assert len(used_cfgs) == 1 and "type='AutocastOptimWrapper'" in open(used_cfgs[0]).read()

    # dtypes seen during training
    dtypes = json.loads(probe_out.read_text())
    assert dtypes['decoder_autocast'] == ['True']
    assert dtypes['decoder_ffn'] == ['torch.bfloat16']
    assert dtypes['decoder_self_attn'] == ['torch.bfloat16']
    assert dtypes['deform_attn_class'] == ['Fp32MultiScaleDeformableAttention']
    for key in ('value', 'sampling_locations', 'attention_weights'):
        assert dtypes[f'deform_attn.{key}'] == ['torch.float32'], key
    assert dtypes['deform_attn_linear'] == ['torch.float32']
    # 2 encoder + 3 decoder deformable attentions per iteration, 20 iterations
    assert dtypes['deform_attn_calls'] == 20 * (2 + 3)

    # losses of every iteration (logger interval 1)
    scalars = glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))
    assert len(scalars) == 1, scalars
    rows = [json.loads(line) for line in open(scalars[0]) if line.strip()]
    rows = [r for r in rows if 'loss' in r]
    assert len(rows) == 20
    for r in rows:
        for k, v in r.items():
            if 'loss' in k:
                assert math.isfinite(v), (r['iter'], k, v)
    totals = [r['loss'] for r in rows]
    assert np.mean(totals[-5:]) < np.mean(totals[:5]), totals
