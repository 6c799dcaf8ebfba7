"""``mmquerymeld.utils.atomic``: the destination holds the old bytes or the new ones, never half."""
import os
import signal
import subprocess
import sys
import time

import pytest

from mmquerymeld.utils.atomic import atomic_open, atomic_write, temporary_path_prefix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_atomic_write_bytes_and_text(tmp_path):
    path = tmp_path / 'sub' / 'out.bin'
    atomic_write(path, b'\x00\x01')
    assert path.read_bytes() == b'\x00\x01'
    atomic_write(path, 'héllo')
    assert path.read_text(encoding='utf-8') == 'héllo'
    assert os.listdir(path.parent) == ['out.bin']  # no temporary file left behind


def test_failed_block_keeps_old_file(tmp_path):
    path = tmp_path / 'out.json'
    path.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic_open(path, 'w') as f:
            f.write('half of the new')
            raise RuntimeError('writer died')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['out.json']


def test_bad_mode():
    with pytest.raises(ValueError, match='mode'):
        with atomic_open('x', 'a'):
            pass


def test_sigkill_mid_write_leaves_old_file(tmp_path):
    """A process killed inside the write leaves the old file and only a temporary beside it."""
    path = tmp_path / 'ckpt.pth'
    path.write_bytes(b'old')
    code = (
        'import sys, time\n'
        'from mmquerymeld.utils.atomic import atomic_open\n'
        f'with atomic_open({str(path)!r}) as f:\n'
        '    f.write(b"new" * 1000); f.flush()\n'
        '    print("writing", flush=True); time.sleep(60)\n')
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE,
                            env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.stdout.readline().strip() == b'writing'
    tmp = [n for n in os.listdir(tmp_path) if n != 'ckpt.pth']
    assert len(tmp) == 1 and str(tmp_path / tmp[0]).startswith(temporary_path_prefix(path))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.1)
    assert path.read_bytes() == b'old'
