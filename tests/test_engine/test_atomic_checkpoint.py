"""Atomic checkpoint writes: a process SIGKILLed mid-write leaves the previous state usable."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import mmquerymeld  # noqa: F401
from mmquerymeld.engine.atomic_backend import PAUSE_ENV, AtomicLocalBackend

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))


def _kill_when_paused(cmd, marker, env, timeout=600):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)
    end = time.monotonic() + timeout
    try:
        while not (osp.isfile(marker) and osp.getsize(marker) > 0):
            if proc.poll() is not None:
                raise AssertionError(f'exited before the pause:\n{proc.stdout.read()[-4000:]}')
            assert time.monotonic() < end, 'timed out'
            time.sleep(0.05)
        return open(marker).read().splitlines()
    finally:  # also when the pause never comes: no process outlives the test
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_backend_put_is_atomic(tmp_path):
    dest = tmp_path / 'iter_2.pth'
    AtomicLocalBackend().put(b'old', str(dest))
    marker = str(tmp_path / 'marker')
    env = dict(os.environ, **{PAUSE_ENV: f'iter_2.pth:{marker}'})
    code = ('from mmquerymeld.engine.atomic_backend import AtomicLocalBackend; '
            f'AtomicLocalBackend().put(b"new" * 1000, {str(dest)!r})')
    tmp_files = _kill_when_paused([sys.executable, '-c', code], marker, env)
    assert len(tmp_files) == 1 and osp.getsize(tmp_files[0]) == 3000  # killed after the bytes
    assert dest.read_bytes() == b'old'  # ... and before the rename
    AtomicLocalBackend().put_text('text', str(tmp_path / 'last_checkpoint'))
    assert (tmp_path / 'last_checkpoint').read_text() == 'text'


def test_kill_during_write_keeps_last_checkpoint_loadable(tmp_path):
    """max_keep_ckpts=1: mmengine's CheckpointHook deletes iter_2.pth before writing iter_4.pth,
    so a kill in that write leaves last_checkpoint naming a deleted file; this hook deletes only
    after the new checkpoint and last_checkpoint are complete."""
    marker = str(tmp_path / 'marker')
    env = dict(os.environ, **{PAUSE_ENV: f'iter_4.pth:{marker}'})
    env['PYTHONPATH'] = os.pathsep.join([REPO, HERE, env.get('PYTHONPATH', '')])
    work = str(tmp_path / 'work')
    code = ('import mmquerymeld; from toy_runner import *; '
            f'build_runner({work!r}, make_dataset(), RecordHook(), max_keep_ckpts=1).train()')
    tmp_files = _kill_when_paused([sys.executable, '-c', code], marker, env)
    assert [osp.basename(f)[:16] for f in tmp_files] == ['.iter_4.pth.tmp-']
    last = open(osp.join(work, 'last_checkpoint')).read()
    assert last.endswith('iter_2.pth') and osp.isfile(last)

    # the resumed run starts from iter_2.pth, removes the partial file and finishes
    code = ('import mmquerymeld; from toy_runner import *; '
            f'r = build_runner({work!r}, make_dataset(), RecordHook(), max_iters=6, '
            'max_keep_ckpts=1, resume=True); r.train(); print("ITER", r.iter)')
    out = subprocess.run([sys.executable, '-c', code], env=dict(env, **{PAUSE_ENV: ''}),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert 'ITER 6' in out.stdout
    assert sorted(f for f in os.listdir(work) if f.endswith('.pth') or '.tmp-' in f) == \
        ['iter_6.pth']
