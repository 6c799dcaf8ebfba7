"""MultiSourceRatioSampler: ratios, ranks, epochs and iterations."""
import numpy as np
import pytest
from mmengine.dataset import pseudo_collate
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader

from mmquerymeld.datasets import MultiSourceDataset, MultiSourceRatioSampler
from mmquerymeld.datasets.samplers import allocate


@pytest.fixture(scope='module')
def two_sources(syn_cfg):
    """panoptic (6 train images) + semantic (6 train images), ratios 3:1."""
    p = dict(syn_cfg['syn_panoptic_train'], ratio=3.0)
    s = dict(syn_cfg['syn_semantic_train'], ratio=1.0)
    return MultiSourceDataset([p, s])


def _fractions(indices, boundary):
    idx = np.asarray(indices)
    return (idx < boundary).mean(), (idx >= boundary).mean()


def test_allocate_is_exact():
    assert allocate(10, [3, 1]) == [8, 2]
    assert sum(allocate(4001, [0.3, 0.3, 0.4])) == 4001
    with pytest.raises(ValueError):
        allocate(5, [0, 0])


def test_ratio_3_to_1_over_4000_draws(two_sources):
    sampler = MultiSourceRatioSampler(two_sources, num_samples=4000, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 4000
    first, second = _fractions(indices, two_sources.cumulative_sizes[0])
    assert abs(first - 0.75) <= 0.05 and abs(second - 0.25) <= 0.05
    assert set(indices) == set(range(len(two_sources)))  # every image is used
    # the ratios are also honoured locally: any window of 400 draws is close to 3:1
    w = np.asarray(indices[:400]) < two_sources.cumulative_sizes[0]
    assert abs(w.mean() - 0.75) < 0.1


def test_two_simulated_ranks(two_sources):
    ranks = [MultiSourceRatioSampler(two_sources, num_samples=4000, seed=3, rank=r,
                                     world_size=2) for r in range(2)]
    per_rank = [list(s) for s in ranks]
    assert [len(p) for p in per_rank] == [2000, 2000] == [len(s) for s in ranks]
    merged = per_rank[0] + per_rank[1]
    first, second = _fractions(merged, two_sources.cumulative_sizes[0])
    assert abs(first - 0.75) <= 0.05 and abs(second - 0.25) <= 0.05
    # positions of the global epoch: disjoint between ranks, complete together
    glob = MultiSourceRatioSampler(two_sources, num_samples=4000, seed=3).epoch_indices()
    assert per_rank[0] == glob[0::2] and per_rank[1] == glob[1::2]
    # with an epoch that fits in the sources, the index sets themselves are disjoint/complete
    small = [list(MultiSourceRatioSampler(two_sources, num_samples=8, seed=1, rank=r,
                                          world_size=2)) for r in range(2)]
    assert not set(small[0]) & set(small[1])
    whole = set(MultiSourceRatioSampler(two_sources, num_samples=8, seed=1).epoch_indices())
    assert set(small[0]) | set(small[1]) == whole and len(whole) == 8
    assert sum(i < two_sources.cumulative_sizes[0] for i in whole) == 6  # 3:1 of 8


def test_round_up_pads_uneven_epochs(two_sources):
    samplers = [MultiSourceRatioSampler(two_sources, num_samples=7, seed=0, rank=r,
                                        world_size=2) for r in range(2)]
    assert [len(list(s)) for s in samplers] == [4, 4]


def test_repeat_mode_uses_sizes(syn_cfg):
    p = dict(syn_cfg['syn_panoptic_train'], ratio=1.0)  # 6 images (one without things)
    r = dict(syn_cfg['syn_referring_train'], ratio=2.0)  # 6 images
    ds = MultiSourceDataset([p, r])
    sampler = MultiSourceRatioSampler(ds, ratio_mode='repeat', seed=0)
    sizes = ds.source_sizes
    assert len(sampler) == sizes[0] + 2 * sizes[1]
    idx = np.asarray(list(sampler))
    assert (idx < ds.cumulative_sizes[0]).sum() == sizes[0]


def test_epochs_and_iterations(two_sources):
    sampler = MultiSourceRatioSampler(two_sources, num_samples=16, seed=0)
    e0 = list(sampler)
    sampler.set_epoch(1)
    e1 = list(sampler)
    assert e0 != e1 and len(e0) == len(e1) == 16
    sampler.set_epoch(0)
    assert list(sampler) == e0  # reproducible per epoch
    # epoch-based: a DataLoader epoch is finite and yields packed samples
    loader = DataLoader(two_sources, batch_size=4, sampler=sampler, collate_fn=pseudo_collate,
                        num_workers=0)
    batches = list(loader)
    assert len(batches) == 4
    tasks = [ds.task for b in batches for ds in b['data_samples']]
    assert tasks.count('panoptic') == 12 and tasks.count('semantic') == 4
    # iteration-based: mmengine's infinite iterator goes through epochs and calls set_epoch
    it = _InfiniteDataloaderIterator(loader)
    for _ in range(6):
        next(it)
    assert sampler.epoch == 1


def test_shuffle_false_interleaves(two_sources):
    idx = MultiSourceRatioSampler(two_sources, num_samples=8, shuffle=False,
                                  seed=0).epoch_indices()
    pattern = [i < two_sources.cumulative_sizes[0] for i in idx]
    assert pattern.count(True) == 6
    assert pattern[:4].count(True) == 3  # spread evenly, not one source after the other


def test_bad_ratios(two_sources):
    with pytest.raises(ValueError, match='ratios'):
        MultiSourceRatioSampler(two_sources, ratios=[1.0])
    with pytest.raises(ValueError, match='ratio_mode'):
        MultiSourceRatioSampler(two_sources, ratio_mode='bogus')


def test_mmdet_batch_composition_sampler_also_works(two_sources):
    """mmdet's MultiSourceSampler (fixed per-batch composition) reuses the same dataset."""
    from mmdet.datasets.samplers import MultiSourceSampler
    sampler = MultiSourceSampler(two_sources, batch_size=4, source_ratio=[3, 1], seed=0)
    it = iter(sampler)
    boundary = two_sources.cumulative_sizes[0]
    for _ in range(5):
        batch = [next(it) for _ in range(4)]
        assert sum(i < boundary for i in batch) == 3


def test_set_start_resumes_the_epoch_part_way(two_sources):
    """Resume: the pass after ``set_start(k)`` is the epoch's tail; the next pass is whole."""
    import pickle

    from mmquerymeld.datasets.samplers import SeededIndex
    sampler = MultiSourceRatioSampler(two_sources, ratios=[3, 1], seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    assert all(isinstance(i, SeededIndex) for i in full)
    sampler.set_start(7)
    tail = list(sampler)
    assert tail == full[7:] and [i.seed for i in tail] == [i.seed for i in full[7:]]
    assert list(sampler) == full  # one pass only
    clone = pickle.loads(pickle.dumps(full[3]))  # into the loader workers' index queues
    assert clone == full[3] and clone.seed == full[3].seed
    with pytest.raises(ValueError, match='set_start'):
        sampler.set_start(len(sampler) + 1)


def test_sample_seeds_follow_the_global_position(two_sources):
    """Seeds depend on (seed, epoch, position in the epoch): not on the rank split."""
    whole = MultiSourceRatioSampler(two_sources, ratios=[1, 1], seed=1, round_up=False)
    seeds = [i.seed for i in whole]
    ranks = [MultiSourceRatioSampler(two_sources, ratios=[1, 1], seed=1, round_up=False,
                                     rank=r, world_size=2) for r in range(2)]
    for r, sampler in enumerate(ranks):
        assert [i.seed for i in sampler] == seeds[r::2]
    whole.set_epoch(1)
    assert [i.seed for i in whole] != seeds
    assert len(set(seeds)) == len(seeds)
