"""Fixtures of the text-side tests: a random-init QM-Tiny checkpoint saved to disk, factories."""
from typing import Callable

import open_clip
import pytest
import torch

import mmquerymeld.models.text  # noqa: F401  (registers QM-Tiny and the text modules)
from mmquerymeld.models.text import OpenCLIPTextEncoder, QueryTextClassifier


@pytest.fixture(autouse=True)
def _no_disk_cache_from_environment(monkeypatch):
    """Text tests count tower calls: a user's ``MMQM_TEXT_CACHE_DIR`` must not serve them."""
    monkeypatch.delenv('MMQM_TEXT_CACHE_DIR', raising=False)


@pytest.fixture(scope='session')
def tiny_ckpt(tmp_path_factory) -> str:
    """An open_clip state dict of a random-init QM-Tiny CLIP (vision + text), as a .pt file."""
    torch.manual_seed(0)
    model = open_clip.create_model('QM-Tiny', pretrained=None)
    path = tmp_path_factory.mktemp('ckpt') / 'qm_tiny_open_clip.pt'
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture
def make_enc(tiny_ckpt) -> Callable[..., OpenCLIPTextEncoder]:
    """Factory of small text encoders on the saved QM-Tiny weights (keyword overrides allowed)."""

    def _make(**kwargs) -> OpenCLIPTextEncoder:
        cfg = dict(model_name='QM-Tiny', pretrained=tiny_ckpt, templates='simple', chunk_size=64)
        cfg.update(kwargs)
        return OpenCLIPTextEncoder(**cfg)

    return _make


@pytest.fixture
def make_clf() -> Callable[..., QueryTextClassifier]:
    """Factory of classifiers from 32-d queries to QM-Tiny's 64-d text space."""

    def _make(**kwargs) -> QueryTextClassifier:
        cfg = dict(query_dims=32, text_dims=64)
        cfg.update(kwargs)
        return QueryTextClassifier(**cfg)

    return _make


class CallCounter:
    """Counts forward passes of a module through a real forward hook."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        self.batch_sizes = []
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self.calls += 1
        self.batch_sizes.append(args[0].shape[0])

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def count_tower() -> Callable[[OpenCLIPTextEncoder], CallCounter]:
    """Attach a call counter to a text encoder's transformer."""
    counters = []

    def _attach(enc: OpenCLIPTextEncoder) -> CallCounter:
        counter = CallCounter(enc.tower.transformer)
        counters.append(counter)
        return counter

    yield _attach
    for counter in counters:
        counter.remove()
