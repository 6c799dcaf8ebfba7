"""``atomic_local``: mmengine's local file backend, writing through ``mmquerymeld.utils.atomic``.

mmengine 0.10.7 writes a checkpoint with ``LocalBackend.put`` (``open(path, 'wb')``): a process
killed mid-write leaves a truncated ``iter_N.pth`` under the final name. Selected through
``backend_args=dict(backend='atomic_local')`` (``AtomicCheckpointHook`` does it for local work
dirs), every ``put`` / ``put_text`` goes to a temporary file that is renamed over the destination
once complete, so the destination is the old file or the new one, never half of one.

Test hook: with ``MMQM_TEST_PAUSE_AFTER_TMP=<file name>:<marker path>`` in the environment, a
write to a file of that name writes the marker (holding the temporary file's path) once the bytes
are in the temporary file and then sleeps, so a test can SIGKILL the process exactly during a
checkpoint write. Unset in normal runs.
"""
import glob
import os
import time
from pathlib import Path
from typing import Union

from mmengine.fileio.backends import LocalBackend, register_backend

from mmquerymeld.utils.atomic import atomic_open, temporary_path_prefix

PAUSE_ENV = 'MMQM_TEST_PAUSE_AFTER_TMP'


def _maybe_pause(filepath: str) -> None:
    """The test hook of the module docstring (a no-op unless ``PAUSE_ENV`` names this file)."""
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    name, _, marker = spec.partition(':')
    if os.path.basename(filepath) != name or not marker:
        return
    tmp_files = glob.glob(glob.escape(temporary_path_prefix(os.path.abspath(filepath))) + '*')
    with open(marker, 'w') as f:
        f.write('\n'.join(tmp_files))
    while True:  # until the test kills the process
        time.sleep(0.05)


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """:class:`LocalBackend` whose writes are atomic (temporary file + fsync + rename)."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write ``obj`` to ``filepath`` atomically (folders are created)."""
        with atomic_open(filepath, 'wb') as f:
            f.write(obj)
            f.flush()
            _maybe_pause(str(filepath))

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        """Write the text ``obj`` to ``filepath`` atomically (UTF-8 only)."""
        if encoding.lower().replace('-', '') != 'utf8':
            raise ValueError(f'atomic_local writes UTF-8 text only, got encoding {encoding!r}')
        with atomic_open(filepath, 'w') as f:
            f.write(obj)
            f.flush()
            _maybe_pause(str(filepath))
