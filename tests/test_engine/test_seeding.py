"""Per-sample augmentation seeds and the RNG-state round trip of the checkpoints."""
import io
import random

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from mmquerymeld.datasets import MultiSourceRatioSampler
from mmquerymeld.datasets.samplers import SeededIndex
from mmquerymeld.engine.rng_state import capture_rng_state, restore_rng_state
from mmquerymeld.engine.seeding import PerSampleSeededFetch, install_per_sample_seeding


class Draws(Dataset):
    """Each item: the draws an augmentation would make from the three global generators."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, idx: int):
        return (idx, float(np.random.rand()), random.random(), float(torch.rand(())))


def test_fetch_reseeds_per_sample_and_keeps_main_rng():
    fetch = PerSampleSeededFetch(Draws())
    before = capture_rng_state()
    a, b = fetch([SeededIndex(0, 7), SeededIndex(4, 7)])
    assert a[1:] == b[1:]  # same seed, same draws, whatever came before
    (c,) = fetch([SeededIndex(0, 8)])
    assert c[1:] != a[1:]
    after = capture_rng_state()
    assert torch.equal(before['torch'], after['torch']) and before['numpy'] == after['numpy']
    assert before['python'] == after['python']  # the main process's streams are untouched
    plain = fetch([1, 1])  # indices without a seed: the ordinary stream
    assert plain[0][1:] != plain[1][1:]


def _values(loader):
    return [tuple(float(v) for v in x) for batch in loader for x in zip(*batch[1:])]


def test_worker_augmentation_independent_of_start_and_workers():
    """The draws of a sample depend on its epoch position only: resume (``set_start``) in a
    fresh worker gives the uninterrupted values, with one worker or none."""
    data = ConcatDataset([Draws(), Draws()])
    install_per_sample_seeding(data)
    sampler = MultiSourceRatioSampler(data, ratios=[1, 1], seed=0)
    full = _values(DataLoader(data, batch_size=2, sampler=sampler, num_workers=1))
    sampler.set_start(6)
    tail = _values(DataLoader(data, batch_size=2, sampler=sampler, num_workers=1))
    assert tail == full[6:]
    assert _values(DataLoader(data, batch_size=2, sampler=sampler, num_workers=0)) == full


def test_rng_state_roundtrip_through_weights_only_checkpoint():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.randn()  # a cached gaussian in numpy's state
    state = capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    buf = io.BytesIO()
    torch.save({'rng_state': state}, buf)
    buf.seek(0)
    loaded = torch.load(buf)['rng_state']  # torch's weights_only default
    torch.rand(5), np.random.rand(5), random.random()
    restore_rng_state(loaded)
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]
