"""Tests of the bounded text-embedding cache."""
import pytest
import torch

from mmquerymeld.models.text import TextEmbeddingCache


def test_lru_bound_and_recency():
    cache = TextEmbeddingCache(max_entries=3)
    cache.put(['a', 'b', 'c'], torch.eye(3))
    cache.gather(['a'])  # 'a' becomes most recent
    cache.put(['d'], torch.ones(1, 3))
    assert len(cache) == 3
    assert 'b' not in cache and 'a' in cache and 'd' in cache
    assert torch.equal(cache.gather(['a', 'd']), torch.tensor([[1., 0, 0], [1, 1, 1]]))


def test_missing_deduplicates_and_counts():
    cache = TextEmbeddingCache()
    cache.put(['a'], torch.zeros(1, 2))
    assert cache.missing(['a', 'b', 'b', 'c', 'a']) == ['b', 'c']
    assert cache.hits == 2 and cache.misses == 2


def test_rows_hold_no_graph_and_follow_apply():
    cache = TextEmbeddingCache()
    weight = torch.randn(2, 4, requires_grad=True)
    cache.put(['x', 'y'], weight * 2)
    row = cache.gather(['x'])
    assert not row.requires_grad and row.grad_fn is None
    cache.apply(lambda t: t.double())
    assert cache.gather(['y']).dtype == torch.float64


def test_disabled_and_invalid():
    cache = TextEmbeddingCache(max_entries=0)
    cache.put(['a'], torch.zeros(1, 2))
    assert len(cache) == 0
    with pytest.raises(ValueError):
        TextEmbeddingCache(max_entries=-1)
    with pytest.raises(ValueError, match='keys'):
        TextEmbeddingCache().put(['a', 'b'], torch.zeros(1, 2))


def test_vocabulary_memo_returns_copies_and_follows_clear_and_apply():
    cache = TextEmbeddingCache(max_vocabularies=1)
    cache.put(['a', 'b'], torch.eye(2))
    assert cache.lookup_vocabulary(['a', 'b']) is None
    stacked = cache.gather(['a', 'b'])
    stacked.zero_()  # the caller's copy; the memo is untouched
    assert torch.equal(cache.lookup_vocabulary(['a', 'b']), torch.eye(2))
    assert cache.lookup_vocabulary(['b', 'a']) is None  # order matters
    cache.gather(['b'])  # evicts the memo of ['a', 'b'] (max_vocabularies=1)
    assert cache.lookup_vocabulary(['a', 'b']) is None
    cache.apply(lambda t: t.double())
    assert cache.lookup_vocabulary(['b']).dtype == torch.float64
    cache.clear()
    assert cache.lookup_vocabulary(['b']) is None and len(cache) == 0
