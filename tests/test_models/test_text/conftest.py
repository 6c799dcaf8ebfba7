"""Fixtures of the text-classifier tests: a random-init QM-Tiny checkpoint saved to disk."""
from typing import Callable

import open_clip
import pytest
import torch

import mmquerymeld.models.text  # noqa: F401  (registers QM-Tiny and the classifier)
from mmquerymeld.models.text import OpenCLIPTextClassifier


@pytest.fixture(scope='session')
def tiny_ckpt(tmp_path_factory) -> str:
    """An open_clip state dict of a random-init QM-Tiny CLIP (vision + text), as a .pt file."""
    torch.manual_seed(0)
    model = open_clip.create_model('QM-Tiny', pretrained=None)
    path = tmp_path_factory.mktemp('ckpt') / 'qm_tiny_open_clip.pt'
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture
def make_clf(tiny_ckpt) -> Callable[..., OpenCLIPTextClassifier]:
    """Factory of small classifiers on the saved QM-Tiny weights (keyword overrides allowed)."""

    def _make(**kwargs) -> OpenCLIPTextClassifier:
        cfg = dict(model_name='QM-Tiny', pretrained=tiny_ckpt, query_dims=32,
                   templates='simple', chunk_size=64)
        cfg.update(kwargs)
        return OpenCLIPTextClassifier(**cfg)

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
def count_tower() -> Callable[[OpenCLIPTextClassifier], CallCounter]:
    """Attach a call counter to a classifier's text transformer."""
    counters = []

    def _attach(clf: OpenCLIPTextClassifier) -> CallCounter:
        counter = CallCounter(clf.text_encoder.transformer)
        counters.append(counter)
        return counter

    yield _attach
    for counter in counters:
        counter.remove()
