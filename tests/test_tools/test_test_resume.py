"""Evaluation never loses work (issue 12, item 5): ``tools/test.py --out`` journals every batch,
a SIGKILLed run resumes from the journal without predicting finished samples again and ends with
the dump and metrics of an uninterrupted run; an undecodable test image stops the run at once with
its path, or (``on_bad_image='skip'``) is counted as ``<source>/skipped_images``.

The evaluations the tests check are independent of each other up to two dependencies (a resume
needs the run it resumes), so the module fixture runs them in two waves of processes at once
(uninterrupted | killed | bad image, then resume | skip-resume | 2-process dist_test.sh) instead
of one after another; each test asserts on its own runs' results.
"""
import json
import os
import os.path as osp
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mmquerymeld.evaluation.journal import (JournalWriter, finished_indices, journal_path,
                                            read_journal)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
SYN = osp.join('data', 'synthetic')
WORLD = dict(seed=3, num_train=2, num_val=2, img_size=96)
KILL_AFTER = 3  # journal records (batches of 1) before the SIGKILL


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
    # one thread in every run (not setdefault): reductions split over threads round differently
    # (measured: scores up to 2e-7 apart with 2 threads vs 1); with one thread each, 1 and 2
    # processes give bit-identical dumps
    env['OMP_NUM_THREADS'] = '1'
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    return env


def _cmd(ckpt, name, *extra):
    return [sys.executable, osp.join(REPO, 'tools', 'test.py'), CFG, ckpt, '--work-dir', name,
            '--out', f'{name}/res.pkl', '--metrics-out', f'{name}/metrics.json',
            '--cfg-options', 'test_dataloader.num_workers=0', *extra]


def _dist_cmd(ckpt, name):
    return ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), CFG, ckpt, '2', '--work-dir', name,
            '--out', f'{name}/res.pkl', '--metrics-out', f'{name}/metrics.json',
            '--cfg-options', 'test_dataloader.num_workers=0']


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _Run:
    """One ``tools/test.py`` (or ``dist_test.sh``) process started in the background."""

    def __init__(self, root, cmd, name, env=None):
        self.log_path = osp.join(str(root), f'{name}.log')
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(cmd, cwd=str(root), env=env or _env(), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def finish(self, timeout=900):
        """Wait; returns ``(returncode, output)``."""
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.stop()
        with open(self.log_path) as f:
            return rc, f.read()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def _make_world(root):
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(str(root / SYN), **WORLD)


def _break_ade_image(root):
    """Truncate the 2nd ADE validation image of the world under ``root``; returns its name."""
    folder = root / SYN / 'ade/ADEChallengeData2016/images/validation'
    name = sorted(os.listdir(folder))[1]
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[:40])
    return name


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    """A world, a random-init checkpoint, and every evaluation the tests check (two waves)."""
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmquerymeld  # noqa: F401
    root = tmp_path_factory.mktemp('eval_resume')
    _make_world(root)
    bad_root = tmp_path_factory.mktemp('eval_bad_image')
    _make_world(bad_root)  # the same world (same seed), then one ADE image broken
    bad_name = _break_ade_image(bad_root)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CFG).model)
    model.init_weights()
    ckpt = str(root / 'model.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)

    runs = []
    try:
        # wave 1: the uninterrupted run | the run SIGKILLed after KILL_AFTER batches | the run
        # that meets the bad image ('raise', the default)
        ref = _Run(root, _cmd(ckpt, 'ref'), 'ref')
        killed = _Run(root, _cmd(ckpt, 'run'), 'killed')
        bad = _Run(bad_root, _cmd(ckpt, 'bad'), 'bad_raise')
        runs += [ref, killed, bad]
        journal = journal_path(str(root / 'run' / 'res.pkl'))
        while killed.proc.poll() is None:
            if osp.isfile(journal) and len(read_journal(journal, repair=False)) >= KILL_AFTER:
                killed.proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
        killed_rc, killed_out = killed.finish(timeout=600)
        done_at_kill = finished_indices(journal)
        res_pkl_after_kill = osp.exists(root / 'run' / 'res.pkl')
        bad_raise = bad.finish()
        bad_done = finished_indices(journal_path(str(bad_root / 'bad' / 'res.pkl')))
        rc, out = ref.finish()
        assert rc == 0, out[-5000:]
        # wave 2: the killed run resumed | the bad-image run resumed with 'skip' | dist_test.sh
        dist_env = _env()
        dist_env.update(PORT=str(_free_port()), PYTHON=sys.executable)
        resumed = _Run(root, _cmd(ckpt, 'run'), 'resumed')
        skip = _Run(bad_root, _cmd(ckpt, 'bad', 'test_dataloader.dataset.on_bad_image=skip'),
                    'bad_skip')
        dist = _Run(root, _dist_cmd(ckpt, 'dist'), 'dist', env=dist_env)
        runs += [resumed, skip, dist]
        results = dict(killed=(killed_rc, killed_out), done_at_kill=done_at_kill,
                       res_pkl_after_kill=res_pkl_after_kill, bad_raise=bad_raise,
                       bad_done=bad_done,
                       resumed=resumed.finish(), bad_skip=skip.finish(), dist=dist.finish())
    finally:
        for run in runs:  # no evaluation outlives a failed fixture
            run.stop()
    with open(root / 'ref' / 'res.pkl', 'rb') as f:
        dump = pickle.load(f)
    with open(root / 'ref' / 'metrics.json') as f:
        metrics = json.load(f)
    assert not osp.exists(journal_path(str(root / 'ref' / 'res.pkl')))  # removed when done
    return dict(root=root, bad_root=bad_root, bad_name=bad_name, ckpt=ckpt, dump=dump,
                metrics=metrics, n=len(dump), results=results)


def _equal(a, b, path='') -> None:
    """Recursive equality of dumped predictions (tensors / arrays exactly)."""
    assert type(a) is type(b), (path, type(a), type(b))
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            _equal(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f'{path}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif hasattr(a, '__dict__'):  # BitmapMasks and other structures: their fields
        _equal(vars(a), vars(b), path)
    else:
        assert a == b, path


def test_sigkilled_test_run_resumes_from_journal(reference):
    root, n, res = reference['root'], reference['n'], reference['results']
    k = KILL_AFTER
    killed_rc, killed_out = res['killed']
    assert killed_rc == -signal.SIGKILL, killed_out[-3000:]
    done = res['done_at_kill']
    assert k <= len(done) < n and done == list(range(len(done)))  # a prefix, in order
    assert not res['res_pkl_after_kill']
    rc, out = res['resumed']
    assert rc == 0, out[-5000:]
    # the finished samples are fed from the journal, only the rest is predicted
    assert f'resumed {len(done)} finished samples, {n - len(done)} left to predict' in out
    assert f'Iter(test) [{n - len(done)}/{n - len(done)}]' in out  # batch size 1
    assert not osp.exists(journal_path(str(root / 'run' / 'res.pkl')))
    with open(root / 'run' / 'res.pkl', 'rb') as f:
        _equal(pickle.load(f), reference['dump'])
    with open(root / 'run' / 'metrics.json') as f:
        assert json.load(f) == reference['metrics']


def test_bad_test_image_stops_at_once_then_skip_resumes(reference):
    root, name, res = reference['bad_root'], reference['bad_name'], reference['results']
    # 'raise' (default): stops at that image, names it; the journal keeps the work before it
    rc, out = res['bad_raise']
    assert rc != 0
    assert "source 'syn_ade_semantic'" in out and name in out and 'does not decode' in out
    journal = journal_path(str(root / 'bad' / 'res.pkl'))
    order = [s['img_path'] for s in reference['dump']]
    bad_index = next(i for i, p in enumerate(order) if p.endswith(name))
    assert res['bad_done'] == list(range(bad_index))  # nothing after the bad image predicted
    # 'skip': resumes from the journal, leaves the image out and counts it
    rc, out = res['bad_skip']
    assert rc == 0, out[-5000:]
    n = reference['n']
    assert f'resumed {bad_index} finished samples, {n - bad_index} left to predict' in out
    assert name in out and 'skipped' in out
    assert not osp.exists(journal)
    with open(root / 'bad' / 'metrics.json') as f:
        metrics = json.load(f)
    assert metrics['syn_ade_semantic/skipped_images'] == 1
    ref = reference['metrics']
    for key, value in ref.items():  # the other sources are untouched
        if not key.startswith('syn_ade_semantic/'):
            assert metrics[key] == value, key
    assert set(metrics) - set(ref) == {'syn_ade_semantic/skipped_images'}
    with open(root / 'bad' / 'res.pkl', 'rb') as f:
        dump = pickle.load(f)
    assert len(dump) == n and dump[bad_index]['bad_image'].endswith(name)


def test_journal_drops_a_torn_record_and_refuses_another_fingerprint(tmp_path):
    path = str(tmp_path / 'res.pkl.journal')
    writer = JournalWriter(path, dict(checkpoint='a'))
    writer.append(dict(indices=[0], samples=[dict(x=torch.ones(2))]))
    writer.append(dict(indices=[1], samples=[dict(x=torch.zeros(2))]))
    writer.close()
    size = osp.getsize(path)
    with open(path, 'ab') as f:  # a record cut by a kill: its length says 1000 bytes
        f.write((1000).to_bytes(8, 'little') + b'partial')
    assert finished_indices(path) == [0, 1]
    records = read_journal(path, dict(checkpoint='a'))
    assert [r['indices'] for r in records] == [[0], [1]]
    assert osp.getsize(path) == size  # the torn tail is cut off before appending again
    with pytest.raises(ValueError, match='another checkpoint or dataset'):
        read_journal(path, dict(checkpoint='b'))


def test_dist_test_two_cpu_processes_equal_one(reference):
    """tools/dist_test.sh with 2 CPU processes (gloo): the same dump and metrics as 1 process."""
    root = reference['root']
    rc, out = reference['results']['dist']
    assert rc == 0, out[-5000:]
    assert 'Distributed launcher: pytorch' in out or 'world_size: 2' in out or \
        'World size: 2' in out, out[-3000:]
    n = reference['n']
    assert f'Iter(test) [{(n + 1) // 2}/{(n + 1) // 2}]' in out  # each rank ran half
    with open(root / 'dist' / 'metrics.json') as f:
        assert json.load(f) == reference['metrics']  # exactly
    # the dump: the same samples in the same order (ranks gathered and de-padded), bit-identical
    # predictions (batch 1 in both layouts, one thread per process: see _env)
    with open(root / 'dist' / 'res.pkl', 'rb') as f:
        dump = pickle.load(f)
    assert [s['img_path'] for s in dump] == [s['img_path'] for s in reference['dump']]
    _equal(dump, reference['dump'])
