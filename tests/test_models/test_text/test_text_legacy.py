"""Configs and checkpoints of the former OpenCLIPTextClassifier in the split layout."""
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mmdet.registry import MODELS
from mmengine.runner.checkpoint import load_state_dict as mmengine_load_state_dict
from mmquerymeld.models.text import (OpenCLIPTextEncoder, QueryTextClassifier,
                                     legacy_text_keys_hook, remap_legacy_text_keys,
                                     split_legacy_text_cfg)
from mmquerymeld.models.text.open_clip_utils import build_text_tower

LEGACY_CFG = dict(type='OpenCLIPTextClassifier', model_name='QM-Tiny', pretrained=None,
                  query_dims=32, templates='simple', task_templates={'instance': 'all'},
                  freeze_text_encoder=False, num_context_tokens=4, chunk_size=64,
                  context_length=40, synonym_sep='|', clean_names=False, cache_size=10,
                  cache_dir='/tmp/cache', prior_prob=0.05, init_logit_scale=10.0,
                  max_logit_scale=50.0, learnable_logit_scale=False, normalize_queries=False,
                  padding_logit=-100.0, init_cfg=dict(type='Xavier', layer='Linear'))


def test_split_legacy_cfg_routes_every_argument():
    encoder, classifier = split_legacy_text_cfg(LEGACY_CFG)
    assert encoder == dict(type='OpenCLIPTextEncoder', model_name='QM-Tiny', pretrained=None,
                           templates='simple', task_templates={'instance': 'all'},
                           freeze_tower=False, num_context_tokens=4, chunk_size=64,
                           context_length=40, synonym_sep='|', clean_names=False,
                           cache_size=10, cache_dir='/tmp/cache')
    assert classifier == dict(type='QueryTextClassifier', query_dims=32, prior_prob=0.05,
                              init_logit_scale=10.0, max_logit_scale=50.0,
                              learnable_logit_scale=False, normalize_queries=False,
                              padding_logit=-100.0, init_cfg=dict(type='Xavier', layer='Linear'))
    assert LEGACY_CFG['type'] == 'OpenCLIPTextClassifier'  # the input is not modified
    enc = MODELS.build(encoder)
    clf = MODELS.build(dict(classifier, text_dims=enc.text_dims))
    assert enc.context_vectors.shape == (4, 64) and enc.context_length == 40
    assert not clf.logit_scale.requires_grad and clf.padding_logit == -100.0
    with pytest.raises(KeyError, match='no_such_arg'):
        split_legacy_text_cfg(dict(LEGACY_CFG, no_such_arg=1))
    with pytest.raises(TypeError, match='QueryTextClassifier'):
        split_legacy_text_cfg(dict(type='QueryTextClassifier'))


def _legacy_state_dict(prefix: str) -> 'OrderedDict[str, torch.Tensor]':
    """What the former module's state_dict() held, built from its attribute names: the tower as
    ``text_encoder``, then ``context_vectors``, ``query_proj``, ``logit_scale``, ``logit_bias``."""
    torch.manual_seed(3)
    tower, _ = build_text_tower('QM-Tiny')
    state = OrderedDict()
    state['backbone.conv1.weight'] = torch.randn(2, 3)
    root = prefix + 'text_classifier.'
    for key, value in tower.state_dict().items():
        state[root + 'text_encoder.' + key] = value
    state[root + 'context_vectors'] = torch.randn(4, 64)
    state[root + 'query_proj.weight'] = torch.randn(64, 32)
    state[root + 'query_proj.bias'] = torch.randn(64)
    state[root + 'logit_scale'] = torch.tensor(2.5)
    state[root + 'logit_bias'] = torch.tensor(-4.0)
    state[prefix + 'decoder.norm.weight'] = torch.randn(32)
    state[prefix + 'decoder.norm.bias'] = torch.randn(32)
    return state


class _Head(nn.Module):
    """The part of QueryMeldHead the text side lives in (with its load hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.text_encoder = OpenCLIPTextEncoder(model_name='QM-Tiny', num_context_tokens=4)
        self.text_classifier = QueryTextClassifier(query_dims=32, text_dims=64)
        self.decoder = nn.Module()
        self.decoder.norm = nn.LayerNorm(32)
        self.register_load_state_dict_pre_hook(legacy_text_keys_hook)


class _Model(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv1 = nn.Linear(3, 2, bias=False)
        self.head = _Head()


def test_remap_puts_every_old_key_on_a_new_module_key():
    old = _legacy_state_dict('head.')
    originals = {k: v.clone() for k, v in old.items()}
    new_layout = _Model().state_dict()
    remapped = remap_legacy_text_keys(OrderedDict(old), 'head.')
    assert set(remapped) == set(new_layout)
    assert len(remapped) == len(old)
    assert remapped['head.text_encoder.context_vectors'] is old[
        'head.text_classifier.context_vectors']
    for old_key, value in originals.items():
        new_key = (old_key.replace('head.text_classifier.text_encoder.', 'head.text_encoder.tower.')
                   .replace('head.text_classifier.context_vectors',
                            'head.text_encoder.context_vectors'))
        assert new_layout[new_key].shape == value.shape, new_key
        assert torch.equal(remapped[new_key], value), new_key
    # in place, idempotent, order kept
    state = OrderedDict(old)
    assert remap_legacy_text_keys(state, 'head.') is state
    assert list(remap_legacy_text_keys(state, 'head.')) == list(remapped)
    assert list(state)[0] == 'backbone.conv1.weight'


def test_remap_errors_and_metadata():
    old = _legacy_state_dict('')
    old['text_classifier.unknown'] = torch.zeros(1)
    with pytest.raises(KeyError, match='text_classifier.unknown'):
        remap_legacy_text_keys(old)
    both = _legacy_state_dict('')
    both['text_encoder.tower.ln_final.weight'] = torch.zeros(64)
    with pytest.raises(KeyError, match='both'):
        remap_legacy_text_keys(both)
    state = _legacy_state_dict('')
    state._metadata = OrderedDict([('text_classifier', {'version': 1}),
                                   ('text_classifier.text_encoder', {}),
                                   ('text_classifier.text_encoder.ln_final', {'version': 2})])
    remap_legacy_text_keys(state)
    assert list(state._metadata) == ['text_classifier', 'text_encoder.tower',
                                     'text_encoder.tower.ln_final']


@pytest.mark.parametrize('loader', ['torch', 'mmengine'])
def test_old_checkpoint_loads_strictly_into_the_new_layout(loader):
    """The head's load hook remaps the former keys: an old checkpoint loads as is."""
    old = _legacy_state_dict('head.')
    model = _Model()
    if loader == 'torch':
        model.load_state_dict(old, strict=True)
    else:
        mmengine_load_state_dict(model, old, strict=True)  # raises on missing / unexpected keys
    head = model.head
    assert torch.equal(head.text_encoder.context_vectors, old['head.text_classifier.context_vectors'])
    assert torch.equal(head.text_encoder.tower.ln_final.weight,
                       old['head.text_classifier.text_encoder.ln_final.weight'])
    assert torch.equal(head.text_classifier.query_proj.weight,
                       old['head.text_classifier.query_proj.weight'])
    assert head.text_classifier.logit_bias.item() == -4.0
    # the new layout loads unchanged
    fresh = _Model()
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh.head.text_encoder.tower.token_embedding.weight,
                       head.text_encoder.tower.token_embedding.weight)


def test_legacy_config_and_checkpoint_of_the_whole_model(tiny_model):
    """QueryMeldHead with the former config builds the same model (same seed, same weights once
    remapped), and a former checkpoint of it loads strictly."""
    legacy_text = dict(type='OpenCLIPTextClassifier', model_name='QM-Tiny', prior_prob=0.01)
    legacy = tiny_model(seed=0, text_encoder=None, text_classifier=legacy_text)
    model = tiny_model(seed=0)
    assert isinstance(legacy.head.text_encoder, OpenCLIPTextEncoder)
    assert isinstance(legacy.head.text_classifier, QueryTextClassifier)
    new_state = model.state_dict()
    for key, value in legacy.state_dict().items():
        assert torch.equal(value, new_state[key]), key
    # the same weights saved under the former names load into a fresh model
    old_state = OrderedDict(
        (k.replace('head.text_encoder.tower.', 'head.text_classifier.text_encoder.'), v)
        for k, v in new_state.items())
    assert 'head.text_classifier.text_encoder.ln_final.weight' in old_state
    fresh = tiny_model(seed=1)
    mmengine_load_state_dict(fresh, old_state, strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, new_state[key]), key
