"""Tests of OpenCLIPTextEncoder (issue 4 acceptance: cache, norms, shapes, gradients to the
context and not to a frozen tower, checkpoints, chunked large vocabularies)."""
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from torch import nn

from mmdet.registry import MODELS
from mmquerymeld.models.text import OpenCLIPTextEncoder

NAMES = ['cat', 'dog', 'traffic_light', 'person/people']


def _tower_embed(enc: OpenCLIPTextEncoder, prompts) -> torch.Tensor:
    """open_clip's own text-tower forward (full 77 tokens, no trimming), normalised."""
    ids = enc.tokenizer(list(prompts))
    with torch.no_grad():
        return F.normalize(enc.tower(ids), dim=-1)


def test_builds_from_registry(tiny_ckpt):
    enc = MODELS.build(dict(type='OpenCLIPTextEncoder', model_name='QM-Tiny',
                            pretrained=tiny_ckpt))
    assert isinstance(enc, OpenCLIPTextEncoder)
    assert enc.text_dims == 64 and enc.context_vectors is None


def test_same_vocabulary_runs_tower_once(make_enc, count_tower):
    enc = make_enc().eval()
    counter = count_tower(enc)
    first = enc.encode_vocabulary(NAMES)
    second = enc.encode_vocabulary(list(NAMES))
    assert counter.calls == 1
    assert torch.equal(first, second)
    second.zero_()  # callers get copies: the cache is not corrupted
    assert torch.equal(enc.encode_vocabulary(NAMES), first)
    # A sampled vocabulary with one new entry encodes only that entry.
    third = enc.encode_vocabulary(['dog', 'horse', 'cat'])
    assert counter.calls == 2 and counter.batch_sizes[-1] == 1
    assert torch.equal(third[0], first[1]) and torch.equal(third[2], first[0])
    enc.clear_cache()
    assert len(enc.cache) == 0
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 3


def test_cache_is_also_used_in_training_with_frozen_tower(make_enc, count_tower):
    enc = make_enc().train()
    counter = count_tower(enc)
    emb = enc.encode_vocabulary(NAMES)
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 1
    assert not emb.requires_grad and emb.grad_fn is None  # no graph kept in the cache


def test_different_templates_give_different_cache_entries(make_enc, count_tower):
    enc = make_enc().eval()
    counter = count_tower(enc)
    simple = enc.encode_vocabulary(NAMES, task='semantic')
    assert len(enc.cache) == len(NAMES)
    all_prompt = enc.encode_vocabulary(NAMES, task='semantic', templates='all')
    assert len(enc.cache) == 2 * len(NAMES) and counter.calls == 2
    assert not torch.allclose(simple, all_prompt)
    # Per-task template sets from the config.
    enc2 = make_enc(task_templates={'instance': 'all'}).eval()
    assert torch.allclose(enc2.encode_vocabulary(NAMES, task='instance'), all_prompt, atol=1e-6)
    assert torch.allclose(enc2.encode_vocabulary(NAMES, task='semantic'), simple, atol=1e-6)


def test_embeddings_are_unit_norm(make_enc):
    enc = make_enc(templates='photo').eval()
    for texts, task in ((NAMES, 'semantic'), (['the man on the left'], 'referring'),
                        (['the most salient object'], 'foreground')):
        emb = enc.encode_vocabulary(texts, task=task)
        assert emb.shape == (len(texts), 64) and emb.dtype == torch.float32
        assert torch.allclose(emb.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)


def test_template_ensembling_matches_open_clip_forward(make_enc):
    enc = make_enc(templates='photo').eval()
    emb = enc.encode_vocabulary(['traffic_light'])[0]
    per_template = _tower_embed(enc, [t.format('traffic light') for t in
                                      enc.prompts.default_templates])
    expected = F.normalize(per_template.mean(dim=0), dim=-1)
    assert torch.allclose(emb, expected, atol=1e-5)


def test_synonyms_rule_equal_weight_mean(make_enc):
    enc = make_enc().eval()
    both, person, people = enc.encode_vocabulary(['person/people', 'person', 'people'])
    assert torch.allclose(both, F.normalize(person + people, dim=-1), atol=1e-6)
    listed = enc.encode_vocabulary([['person', 'people']])[0]
    assert torch.allclose(listed, both, atol=1e-6)
    assert not torch.allclose(both, person, atol=1e-3)


def test_referring_texts_are_raw_and_truncated_with_warning(make_enc):
    enc = make_enc(templates='photo').eval()
    sentence = 'the man/woman on the_left'  # no synonym split, no cleaning for raw texts
    emb = enc.encode_vocabulary([sentence], task='referring')[0]
    assert torch.allclose(emb, _tower_embed(enc, [sentence])[0], atol=1e-5)
    long_sentence = ' '.join(['a very long referring expression'] * 30)
    with pytest.warns(UserWarning, match='truncated'):
        long_emb = enc.encode_vocabulary([long_sentence], task='referring')
    assert torch.allclose(long_emb.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_bad_inputs_name_the_problem(make_enc):
    enc = make_enc()
    with pytest.raises(KeyError, match='unknown task'):
        enc.encode_vocabulary(['cat'], task='captioning')
    with pytest.raises(TypeError, match=r'texts\[1\]'):
        enc.encode_vocabulary(['cat', 3])
    with pytest.raises(TypeError, match=r'texts\[0\]'):
        enc.encode_vocabulary([['cat', {'a': 1}]])
    with pytest.raises(KeyError, match='task_templates'):
        make_enc(task_templates={'caption': 'all'})
    with pytest.raises(ValueError, match='tasks'):
        enc.encode_batch_vocabularies([['cat'], ['dog']], ['semantic'])


def test_gradients_reach_projection_not_frozen_tower(make_enc, make_clf):
    enc, clf = make_enc().train(), make_clf().train()
    texts = enc.encode_vocabulary(NAMES)
    logits = clf(torch.randn(2, 4, 32), texts)
    logits.sigmoid().sum().backward()
    assert clf.query_proj.weight.grad is not None and clf.query_proj.weight.grad.abs().sum() > 0
    assert clf.logit_scale.grad is not None and clf.logit_bias.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in enc.tower.parameters())
    assert not enc.tower.training  # frozen tower stays in eval mode


def test_context_vectors_get_gradients_and_bypass_cache(make_enc, make_clf, count_tower):
    enc, clf = make_enc(num_context_tokens=4).train(), make_clf()
    counter = count_tower(enc)
    texts = enc.encode_vocabulary(NAMES)
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 2  # no cache while the context is trained
    clf(torch.randn(1, 3, 32), texts).sum().backward()
    assert enc.context_vectors.grad is not None and enc.context_vectors.grad.abs().sum() > 0
    assert all(p.grad is None for p in enc.tower.parameters())
    # Referring texts get no context: cached even in training.
    enc.encode_vocabulary(['the red car'], task='referring')
    enc.encode_vocabulary(['the red car'], task='referring')
    assert counter.calls == 3
    enc.eval()
    enc.encode_vocabulary(NAMES)
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 4


def test_context_vectors_fill_the_placeholder_slots(make_enc):
    enc = make_enc(num_context_tokens=3).eval()
    placeholder = enc.tokenizer.encode('x')[0]
    with torch.no_grad():
        enc.context_vectors.copy_(enc.tower.token_embedding.weight[placeholder].expand(3, -1))
    emb = enc.encode_vocabulary(['cat'])[0]
    assert torch.allclose(emb, _tower_embed(enc, ['x x x cat.'])[0], atol=1e-5)


def test_fine_tuning_with_lr_multiplier(make_enc, make_clf):
    enc, clf = make_enc(freeze_tower=False).train(), make_clf()
    texts = enc.encode_vocabulary(NAMES)
    assert texts.requires_grad
    clf(torch.randn(1, 3, 32), texts).sum().backward()
    grads = [p.grad for p in enc.tower.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    holder = nn.Module()
    holder.text_encoder, holder.text_classifier = enc, clf
    wrapper = build_optim_wrapper(holder, dict(
        optimizer=dict(type='AdamW', lr=1e-3),
        paramwise_cfg=dict(custom_keys={'text_encoder.tower': dict(lr_mult=0.1)})))
    tower_ids = {id(p) for p in enc.tower.parameters()}
    for group in wrapper.optimizer.param_groups:
        expected = 1e-4 if id(group['params'][0]) in tower_ids else 1e-3
        assert math.isclose(group['lr'], expected, rel_tol=1e-6)


def test_trainable_tower_cache_cleared_on_mode_switch(make_enc, count_tower):
    enc = make_enc(freeze_tower=False).eval()
    counter = count_tower(enc)
    enc.encode_vocabulary(NAMES)
    assert len(enc.cache) == len(NAMES)
    enc.train()
    assert len(enc.cache) == 0
    enc.encode_vocabulary(NAMES)
    enc.encode_vocabulary(NAMES)
    assert counter.calls == 3  # two training passes, no cache


def test_checkpoint_roundtrip_gives_identical_embeddings(make_enc, tmp_path):
    enc = make_enc(templates='photo').eval()
    reference = enc.encode_vocabulary(NAMES).clone()
    # The tower matches open_clip's own loading of the same file.
    full = open_clip.create_model('QM-Tiny', pretrained=enc.pretrained)
    ids = enc.tokenizer(['a photo of a cat.'])
    with torch.no_grad():
        assert torch.allclose(enc.tower(ids), full.encode_text(ids), atol=1e-6)
    # mmengine-style checkpoint of the encoder, loaded back through `pretrained`.
    path = tmp_path / 'encoder.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': enc.state_dict()}, path)
    reloaded = make_enc(templates='photo', pretrained=str(path)).eval()
    assert torch.equal(reloaded.encode_vocabulary(NAMES), reference)
    # load_state_dict into a random-init encoder: the stale cache is dropped.
    fresh = make_enc(templates='photo', pretrained=None).eval()
    stale = fresh.encode_vocabulary(NAMES).clone()
    assert not torch.allclose(stale, reference)
    fresh.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    assert torch.equal(fresh.encode_vocabulary(NAMES), reference)


def test_init_weights_restores_pretrained_tower(make_enc):
    enc = make_enc().eval()
    reference = enc.encode_vocabulary(NAMES).clone()
    with torch.no_grad():  # what a parent's blanket init_cfg would do
        for param in enc.tower.parameters():
            param.normal_()
    enc.init_weights()
    assert torch.allclose(enc.encode_vocabulary(NAMES), reference, atol=1e-6)


def test_own_init_cfg_does_not_overwrite_pretrained_tower(make_enc):
    """An init_cfg with layer='Linear' matches the tower's MLP layers: the pretrained tower must
    survive it."""
    enc = make_enc(init_cfg=dict(type='Constant', layer='Linear', val=0.5, bias=0.0)).eval()
    reference = {k: v.clone() for k, v in enc.tower.state_dict().items()}
    enc.init_weights()
    for key, value in enc.tower.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_large_vocabulary_encodes_in_chunks(make_enc, count_tower):
    names = [f'object kind number {i}' for i in range(1203)]  # LVIS-sized
    chunked = make_enc(chunk_size=256).eval()
    counter = count_tower(chunked)
    emb = chunked.encode_vocabulary(names)
    assert counter.calls == math.ceil(1203 / 256)
    assert max(counter.batch_sizes) == 256
    single = make_enc(chunk_size=2048).eval()
    assert torch.allclose(emb, single.encode_vocabulary(names), atol=1e-5)
    assert emb.shape == (1203, 64)


def test_cache_moves_with_module(make_enc):
    enc = make_enc().eval()
    enc.encode_vocabulary(NAMES)
    enc.double()
    assert enc.cache.gather([enc.cache.keys()[0]]).dtype == torch.float64
    enc.float()
    emb = enc.encode_vocabulary(NAMES)
    assert emb.device == enc.device


def test_batch_vocabularies_are_padded_and_deduplicated(make_enc, make_clf, count_tower):
    enc = make_enc().eval()
    counter = count_tower(enc)
    embeds, valid = enc.encode_batch_vocabularies(
        [['cat', 'dog'], ['dog'], ['the dog on the left']],
        ['semantic', 'semantic', 'referring'])
    assert embeds.shape == (3, 2, 64)
    assert valid.tolist() == [[True, True], [True, False], [True, False]]
    assert counter.calls == 2  # one pass per prompt rule, 'dog' encoded once
    assert torch.equal(embeds[1, 0], embeds[0, 1]) and torch.all(embeds[1, 1] == 0)
    assert torch.equal(embeds[0], enc.encode_vocabulary(['cat', 'dog']))
    logits = make_clf()(torch.randn(3, 4, 32), embeds, valid)
    assert logits.shape == (3, 4, 2) and torch.all(logits[2, :, 1] == -1e4)
