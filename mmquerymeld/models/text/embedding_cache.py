"""A bounded cache of text embeddings, one row per (prompt rule, vocabulary entry).

Caching per entry rather than per vocabulary makes sampled vocabularies (positives plus random
negatives, a different list every image) hit as well as fixed ones: a fixed vocabulary costs one
text-tower pass per process, a sampled one only encodes the entries never seen before.
"""
from collections import OrderedDict
from typing import Callable, Hashable, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor


class TextEmbeddingCache:
    """Least-recently-used map from a hashable key to a detached embedding ``[D]``.

    Entries never hold autograd graphs (they are detached on insertion) and live on the device
    of the module that owns the cache: call :meth:`apply` from the owner's ``_apply`` so that
    ``module.to(device)`` / ``.half()`` move them too.

    Besides the rows, the last ``max_vocabularies`` stacked vocabularies are memoised, so that a
    fixed vocabulary (a validation set's class list, LVIS' 1203 names) is one dictionary lookup per
    forward instead of K.

    Args:
        max_entries: Bound on the number of cached rows; the least recently used rows are dropped
            beyond it. ``0`` disables caching.
        max_vocabularies: Number of memoised stacked vocabularies (0 disables the memo).
    """

    def __init__(self, max_entries: int = 100_000, max_vocabularies: int = 8) -> None:
        if max_entries < 0:
            raise ValueError(f'cache_size must be >= 0, got {max_entries}')
        self.max_entries = max_entries
        self.max_vocabularies = max_vocabularies
        self._rows: 'OrderedDict[Hashable, Tensor]' = OrderedDict()
        self._vocabs: 'OrderedDict[Tuple[Hashable, ...], Tensor]' = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._rows

    def keys(self) -> List[Hashable]:
        """The cached keys, least recently used first."""
        return list(self._rows)

    def missing(self, keys: Iterable[Hashable]) -> List[Hashable]:
        """Keys not cached, deduplicated in order of first appearance (counts hits/misses)."""
        out: List[Hashable] = []
        seen = set()
        for key in keys:
            if key in self._rows:
                self.hits += 1
            elif key not in seen:
                self.misses += 1
                seen.add(key)
                out.append(key)
        return out

    def put(self, keys: Sequence[Hashable], rows: Tensor) -> None:
        """Insert rows.

        Args:
            keys: K keys.
            rows: ``[K, D]`` embeddings (detached and cloned on insertion).
        """
        if self.max_entries == 0:
            return
        if len(keys) != rows.shape[0]:
            raise ValueError(f'{len(keys)} keys for {rows.shape[0]} rows')
        rows = rows.detach()
        for i, key in enumerate(keys):
            self._rows[key] = rows[i].clone()
            self._rows.move_to_end(key)
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)

    def gather(self, keys: Sequence[Hashable], memo_key: Optional[Hashable] = None) -> Tensor:
        """Stack the rows of ``keys`` (all must be cached) and memoise the stack.

        Args:
            keys: K keys.
            memo_key: Key of the stacked vocabulary (default: ``tuple(keys)``); the caller may use
                a cheaper one that identifies the same vocabulary, e.g. its raw texts.

        Returns:
            ``[K, D]`` new tensor (the caller may modify it).
        """
        for key in keys:
            self._rows.move_to_end(key)
        stacked = torch.stack([self._rows[key] for key in keys])
        if self.max_vocabularies > 0 and self.max_entries > 0:
            self._vocabs[tuple(keys) if memo_key is None else memo_key] = stacked
            while len(self._vocabs) > self.max_vocabularies:
                self._vocabs.popitem(last=False)
        return stacked.clone()

    def lookup_vocabulary(self, memo_key: Hashable) -> Optional[Tensor]:
        """The memoised stack of a vocabulary, or None.

        Args:
            memo_key: ``tuple(keys)`` or the ``memo_key`` given to :meth:`gather`.

        Returns:
            ``[K, D]`` new tensor, or None when this vocabulary is not memoised.
        """
        if isinstance(memo_key, list):
            memo_key = tuple(memo_key)
        stacked = self._vocabs.get(memo_key)
        if stacked is None:
            return None
        self._vocabs.move_to_end(memo_key)
        self.hits += stacked.shape[0]
        return stacked.clone()

    def clear(self) -> None:
        """Drop every row (after the encoder's weights changed)."""
        self._rows.clear()
        self._vocabs.clear()

    def apply(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Apply a tensor function (device/dtype move) to every row."""
        for key in list(self._rows):
            self._rows[key] = fn(self._rows[key])
        for key in list(self._vocabs):
            self._vocabs[key] = fn(self._vocabs[key])

    def device(self) -> Optional[torch.device]:
        """Device of the cached rows (None when empty)."""
        return next(iter(self._rows.values())).device if self._rows else None
