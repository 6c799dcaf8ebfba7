"""An on-disk text-embedding cache shared by processes (so a new process skips the text tower).

Layout: ``<root>/<arch>-<namespace digest>/<chunk digest>.qmtc.pt``. A *namespace* is everything
the embedding of an entry depends on besides the entry: open_clip architecture, a SHA-256 of the
text tower's weights (and of the CoOp context when the prompts use it), the prompt templates and
rule, the context length and :data:`FORMAT_VERSION`. A *chunk* is the set of entries encoded by one
call (a whole 1203-name vocabulary is one file), so a lookup reads a handful of files, not one per
entry or per prompt. Files are written with :func:`mmquerymeld.utils.atomic.atomic_write`
(concurrent writers of the same chunk leave one complete file); each carries its namespace and a
SHA-256 of its content, and a file that fails to load or to verify is reported in a warning that
names it, removed, and its entries are recomputed. Past ``max_chunks`` files in a namespace (a
sampled training vocabulary writes a small chunk per new batch) the chunks are merged into one.
"""
import contextlib
import hashlib
import io
import json
import os
import os.path as osp
import re
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmquerymeld.utils.atomic import TMP_MARKER, atomic_write

#: Environment variable that turns the disk cache on when the config leaves it unset.
ENV_VAR = 'MMQM_TEXT_CACHE_DIR'
#: Bumped whenever the encoding of an entry changes meaning (old files are then never read).
FORMAT_VERSION = 1
SUFFIX = '.qmtc.pt'

Entry = Tuple[str, ...]


def resolve_disk_cache_dir(disk_cache_dir: Optional[str]) -> Optional[str]:
    """The cache folder: ``disk_cache_dir`` if given, else ``$MMQM_TEXT_CACHE_DIR``, else None."""
    folder = disk_cache_dir or os.environ.get(ENV_VAR, '').strip()
    return osp.abspath(osp.expanduser(folder)) if folder else None


class TensorsFingerprint:
    """SHA-256 of named tensors (names, dtypes, shapes, bytes), recomputed only on change.

    A change is seen through each tensor's identity, storage pointer and version counter (every
    in-place write, e.g. ``load_state_dict``'s ``copy_`` or an optimizer step, bumps it), so the
    weights of a frozen tower are hashed once per process.
    """

    def __init__(self) -> None:
        self._stamp: Optional[tuple] = None
        self._digest = ''

    def __call__(self, named: Iterable[Tuple[str, Tensor]]) -> str:
        """Args: named: ``(name, tensor)`` pairs. Returns: the hex digest."""
        named = list(named)
        stamp = tuple((n, id(t), t.data_ptr(), t._version) for n, t in named)
        if stamp != self._stamp:
            sha = hashlib.sha256()
            for name, tensor in named:
                data = tensor.detach().cpu().contiguous().reshape(-1)
                sha.update(f'{name}|{data.dtype}|{tuple(tensor.shape)}|'.encode())
                sha.update(memoryview(data.view(torch.uint8).numpy()))
            self._stamp, self._digest = stamp, sha.hexdigest()
        return self._digest


def _content_digest(entries: List[List[str]], embeds: Tensor) -> str:
    sha = hashlib.sha256(json.dumps(entries).encode())
    sha.update(memoryview(embeds.contiguous().reshape(-1).view(torch.uint8).numpy()))
    return sha.hexdigest()


class TextEmbeddingDiskCache:
    """Chunk files of ``entry -> [D]`` embeddings, per namespace (see the module docstring).

    Args:
        root: Cache folder (created on first write).
        max_chunks: Chunk files per namespace beyond which they are merged into one.
    """

    def __init__(self, root: str, max_chunks: int = 32) -> None:
        self.root = root
        self.max_chunks = max_chunks
        # per namespace folder: rows read or written so far, and the files already read
        self._rows: Dict[str, Dict[Entry, Tensor]] = {}
        self._files: Dict[str, Dict[str, Tuple[tuple, List[Entry]]]] = {}
        #: Entries served from disk / written to disk by this process.
        self.hits = 0
        self.writes = 0

    def folder(self, key: dict) -> str:
        """Namespace folder of ``key`` (a JSON-serialisable dict with an ``'arch'`` item)."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        arch = re.sub(r'[^A-Za-z0-9_.-]+', '_', str(key.get('arch', 'text')))
        return osp.join(self.root, f'{arch}-{digest}')

    def fetch_or_encode(self, key: dict, entries: Sequence[Entry],
                        encode: Callable[[List[Entry]], Tensor]) -> Tensor:
        """Rows of ``entries``: read from disk where present, encoded (and written) otherwise.

        Args:
            key: The namespace (see :meth:`folder`).
            entries: E distinct entries (tuples of synonyms).
            encode: Encoder of the entries not on disk: ``list of M entries -> [M, D]``.

        Returns:
            ``[E, D]`` float32 on the device of ``encode``'s output (CPU when nothing is encoded).
        """
        folder = self.folder(key)
        rows = self._refresh(folder, key)
        todo = [e for e in entries if e not in rows]
        self.hits += len(entries) - len(todo)
        device = None
        if todo:
            embeds = encode(todo)
            device = embeds.device
            self.store(key, todo, embeds)
        out = torch.stack([rows[e] for e in entries])
        return out if device is None else out.to(device)

    # ------------------------------------------------------------------ reading
    def _refresh(self, folder: str, key: dict) -> Dict[Entry, Tensor]:
        """Read the namespace's chunk files not read yet (or changed since)."""
        rows = self._rows.setdefault(folder, {})
        seen = self._files.setdefault(folder, {})
        try:
            names = [n for n in os.listdir(folder) if n.endswith(SUFFIX) and TMP_MARKER not in n]
        except FileNotFoundError:
            return rows
        for name in sorted(names):
            path = osp.join(folder, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:  # merged away by another process meanwhile
                continue
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            if name in seen and seen[name][0] == stamp:
                continue
            loaded = self._read(path, key, stamp)
            seen[name] = (stamp, [] if loaded is None else list(loaded))
            if loaded is not None:
                rows.update(loaded)
        return rows

    def _read(self, path: str, key: dict, stamp: tuple) -> Optional[Dict[Entry, Tensor]]:
        """One verified chunk, or None (a corrupt file is reported and removed)."""
        try:
            data = torch.load(path, map_location='cpu', weights_only=True)
            if not isinstance(data, dict) or data.get('format') != FORMAT_VERSION:
                raise ValueError('not a chunk file of format version '
                                 f'{FORMAT_VERSION}')
            entries, embeds = data['entries'], data['embeds']
            if json.loads(data['key']) != json.loads(json.dumps(key, sort_keys=True)):
                raise ValueError('namespace key does not match its folder')
            if not (torch.is_tensor(embeds) and embeds.dtype == torch.float32
                    and embeds.dim() == 2 and embeds.shape[0] == len(entries)):
                raise ValueError(f'embeddings of shape {tuple(getattr(embeds, "shape", ()))} '
                                 f'for {len(entries)} entries')
            if _content_digest(entries, embeds) != data['digest']:
                raise ValueError('content checksum mismatch')
        except FileNotFoundError:
            return None
        except Exception as err:  # truncated zip, bit flips, foreign files: recompute
            warnings.warn(f'text-embedding disk cache: ignoring corrupt file {path} '
                          f'({type(err).__name__}: {err}); its entries are recomputed',
                          UserWarning)
            with contextlib.suppress(OSError):
                st = os.stat(path)
                if (st.st_ino, st.st_size, st.st_mtime_ns) == stamp:  # not replaced meanwhile
                    os.remove(path)
            return None
        return {tuple(e): row for e, row in zip(entries, embeds)}

    # ------------------------------------------------------------------ writing
    def store(self, key: dict, entries: Sequence[Entry], embeds: Tensor) -> None:
        """Write the rows of ``entries`` as one chunk of ``key``'s namespace (atomically).

        Args:
            key: The namespace (see :meth:`folder`).
            entries: E distinct entries.
            embeds: ``[E, D]`` embeddings (stored as float32 on the CPU).
        """
        folder = self.folder(key)
        rows = self._rows.setdefault(folder, {})
        cpu = embeds.detach().float().cpu().contiguous()
        rows.update(zip(entries, cpu))
        self._write_chunk(folder, key, entries, cpu)
        self.writes += len(entries)
        seen = self._files.get(folder, {})
        if len(seen) > self.max_chunks:
            self._merge(folder, key)

    def _write_chunk(self, folder: str, key: dict, entries: Sequence[Entry],
                     embeds: Tensor) -> str:
        lists = [list(e) for e in entries]
        name = hashlib.sha256(json.dumps(sorted(lists)).encode()).hexdigest()[:24] + SUFFIX
        buf = io.BytesIO()
        torch.save(dict(format=FORMAT_VERSION, key=json.dumps(key, sort_keys=True),
                        entries=lists, embeds=embeds,
                        digest=_content_digest(lists, embeds)), buf)
        path = osp.join(folder, name)
        try:
            atomic_write(path, buf.getvalue())
        except OSError as err:  # read-only or full disk: the cache is an optimisation only
            warnings.warn(f'text-embedding disk cache: cannot write {path} ({err})', UserWarning)
            return name
        with contextlib.suppress(FileNotFoundError):  # merged away by another process
            st = os.stat(path)
            self._files.setdefault(folder, {})[name] = ((st.st_ino, st.st_size, st.st_mtime_ns),
                                                        list(entries))
        return name

    def _merge(self, folder: str, key: dict) -> None:
        """Merge every chunk this process has read or written into one file, then remove them.

        A file removed under a concurrent reader is skipped by it (its rows are in the merged
        file); two processes merging at once leave two valid files.
        """
        rows = self._rows[folder]
        entries = list(rows)
        merged = self._write_chunk(folder, key, entries, torch.stack([rows[e] for e in entries]))
        seen = self._files[folder]
        for name in [n for n in seen if n != merged]:
            with contextlib.suppress(OSError):
                os.remove(osp.join(folder, name))
            del seen[name]
