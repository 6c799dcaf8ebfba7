"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half.

One helper for every file the plugin writes that a later process trusts: checkpoints and
``last_checkpoint``, the on-disk text-embedding cache, annotation-tool outputs, results dumps.
The bytes go to a temporary file in the destination's folder (same file system, so the final
``os.replace`` is atomic on POSIX), are flushed and fsync'ed, then renamed over the destination.
A process killed at any point leaves at most a ``.<name>.tmp-*`` file, which is never read.
"""
import contextlib
import os
import tempfile
from typing import IO, Iterator, Union

PathLike = Union[str, 'os.PathLike[str]']

#: Prefix of the temporary files: ``.<destination name>.tmp-<random>``.
TMP_MARKER = '.tmp-'


def temporary_path_prefix(path: PathLike) -> str:
    """The prefix that every temporary file of :func:`atomic_open` for ``path`` starts with."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, f'.{name}{TMP_MARKER}')


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = 'wb') -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` only when the ``with`` block succeeds.

    Args:
        path: Destination file; its folder is created if missing.
        mode: ``'wb'`` or ``'w'`` (text, UTF-8).

    Yields:
        The open temporary file. On an exception inside the block the temporary file is removed
        and ``path`` is left as it was.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f"atomic_open supports mode 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{name}{TMP_MARKER}', dir=folder)
    try:
        with os.fdopen(fd, mode, **({'encoding': 'utf-8'} if mode == 'w' else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    # make the rename itself durable (best effort: not every file system supports it)
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: PathLike, data: Union[bytes, str]) -> None:
    """Write ``data`` (bytes or text) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, 'wb' if isinstance(data, bytes) else 'w') as f:
        f.write(data)
