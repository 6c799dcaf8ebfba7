"""Kill-anywhere resume of tools/train.py (issue 12, items 1, 2 and the Done-when test).

The demo QueryMeldNet config (denoising on, one loader worker, the ratio sampler) trains 8
iterations of batch 2 on a small synthetic world (14 samples: the epoch ends after 7 batches),
checkpointing every 2. One run goes through uninterrupted; another is SIGKILLed three times (the
whole process group, workers included): once while ``iter_4.pth`` is being written (the atomic
writer's test hook holds the process after the bytes are in the temporary file), then at two
moments the test does not choose beyond "after iteration k was seen". Each restart uses
``--resume``; the killed run must end with exactly the uninterrupted run's weights, see the same
samples with the same augmentation at every iteration, and never replay finished batches.
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from kill_resume_probe import write_probe_config
from train_env import REPO, train_env

DEMO_CFG = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
MAX_ITERS = 8
OPTIONS = ['--cfg-options', f'train_cfg.max_iters={MAX_ITERS}',
           f'train_cfg.val_interval={MAX_ITERS}', f'train_cfg.val_begin={MAX_ITERS + 1}',
           'default_hooks.checkpoint.interval=2',
           'default_hooks.logger.interval=1', 'train_dataloader.batch_size=2',
           'train_dataloader.num_workers=1', 'train_dataloader.persistent_workers=True']


_STARTED = []


def _start(root, cfg, work_dir, log, resume=False, env=None):
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg, '--work-dir', work_dir,
           *(['--resume'] if resume else []), *OPTIONS]
    # a session of its own: SIGKILL goes to the trainer and its loader workers at once
    proc = subprocess.Popen(cmd, cwd=root, env=env or train_env(), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _no_survivors():
    """Kill what a failed test left running (e.g. a trainer held in the write pause)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(proc, predicate, what, timeout=900):
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f'trainer exited (rc {proc.returncode}) before {what}'
        assert time.monotonic() < end, f'timed out waiting for {what}'
        time.sleep(0.05)


def _kill(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _record(seen_dir, k):
    path = osp.join(seen_dir, f'iter_{k}.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _seen_by(seen_dir, k, pid):
    def check():
        rec = _record(seen_dir, k)
        return rec is not None and rec['pid'] == pid
    return check


def test_killed_three_times_resumes_to_identical_weights(tmp_path):
    from mmquerymeld.testing import generate_synthetic_world
    root = str(tmp_path)
    generate_synthetic_world(osp.join(root, 'data', 'synthetic'), seed=1, num_train=2,
                             num_val=1, img_size=64)
    ref_seen, seen = str(tmp_path / 'ref_seen'), str(tmp_path / 'seen')
    os.makedirs(ref_seen)
    os.makedirs(seen)
    ref_cfg = write_probe_config(str(tmp_path / 'ref_cfg.py'), DEMO_CFG,
                                 [dict(type='DataOrderProbeHook', out_dir=ref_seen)])
    cfg = write_probe_config(str(tmp_path / 'cfg.py'), DEMO_CFG,
                             [dict(type='DataOrderProbeHook', out_dir=seen)])
    ref_dir, work_dir = str(tmp_path / 'ref'), str(tmp_path / 'work')
    logs = [open(tmp_path / f'log{i}.txt', 'w+') for i in range(5)]

    # the uninterrupted run, alongside the killed one
    ref = _start(root, ref_cfg, ref_dir, logs[4])

    # kill 1: during the write of iter_4.pth (the temporary file exists, the final one does not)
    marker = str(tmp_path / 'paused_in_write')
    env = train_env()
    env['MMQM_TEST_PAUSE_AFTER_TMP'] = f'iter_4.pth:{marker}'
    proc = _start(root, cfg, work_dir, logs[0], env=env)
    _wait_for(proc, lambda: osp.isfile(marker) and os.path.getsize(marker) > 0,
              'the pause inside the iter_4.pth write')
    tmp_file = open(marker).read()
    assert osp.basename(tmp_file).startswith('.iter_4.pth.tmp-') and osp.isfile(tmp_file)
    assert osp.getsize(tmp_file) > 0 and not osp.exists(osp.join(work_dir, 'iter_4.pth'))
    _kill(proc)
    assert open(osp.join(work_dir, 'last_checkpoint')).read().endswith('iter_2.pth')

    # kills 2 and 3: once iteration 5, then iteration 7, was trained by the resumed process
    resumed = []
    for i, k in ((1, 5), (2, 7)):
        proc = _start(root, cfg, work_dir, logs[i], resume=True)
        resumed.append(proc.pid)
        _wait_for(proc, _seen_by(seen, k, proc.pid), f'iteration {k}')
        _kill(proc)
    # the last restart runs to the end
    proc = _start(root, cfg, work_dir, logs[3], resume=True)
    resumed.append(proc.pid)
    assert proc.wait(timeout=900) == 0, logs[3].seek(0) or logs[3].read()[-5000:]
    assert ref.wait(timeout=900) == 0, logs[4].seek(0) or logs[4].read()[-5000:]

    texts = []
    for log in logs[:4]:
        log.seek(0)
        texts.append(log.read())
    # the partial file of kill 1 was never loaded, and was cleaned up on the next start
    assert 'Auto resumed from the latest checkpoint' in texts[1]
    assert 'iter_2.pth' in texts[1].split('Auto resumed from the latest checkpoint')[1][:300]
    assert 'Removed 1 partial checkpoint file' in texts[1]
    assert not [f for f in os.listdir(work_dir) if '.tmp-' in f]
    # every restart resumed the sampler position: nothing was replayed
    for text in texts[1:]:
        assert 'without replaying finished batches' in text, text[-3000:]
        assert 'Advance dataloader' not in text
    for k in range(1, MAX_ITERS + 1):
        rec, ref_rec = _record(seen, k), _record(ref_seen, k)
        # same samples, same flips and crops (shapes) at every iteration as the uninterrupted run
        assert rec['samples'] == ref_rec['samples'], (k, rec, ref_rec)
    first_iters = {}
    for k in range(1, MAX_ITERS + 1):
        rec = _record(seen, k)
        if rec['pid'] in resumed and rec['pid'] not in first_iters:
            first_iters[rec['pid']] = rec
    # the first iteration of each resumed process was the first batch its loader fetched
    assert sorted(first_iters) == sorted(resumed)
    assert all(r['fetched'] == 1 for r in first_iters.values()), first_iters

    final = torch.load(osp.join(work_dir, f'iter_{MAX_ITERS}.pth'), map_location='cpu')
    expected = torch.load(osp.join(ref_dir, f'iter_{MAX_ITERS}.pth'), map_location='cpu')
    assert set(final['state_dict']) == set(expected['state_dict'])
    for key, value in expected['state_dict'].items():
        assert torch.equal(final['state_dict'][key], value), key
    for log in logs:
        log.close()
