"""Tests of OpenCLIPTextClassifier (issue 4 acceptance: cache, norms, shapes, gradients,
checkpoints, chunked large vocabularies)."""
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper

from mmdet.registry import MODELS
from mmquerymeld.models.text import OpenCLIPTextClassifier

NAMES = ['cat', 'dog', 'traffic_light', 'person/people']


def _tower_embed(clf: OpenCLIPTextClassifier, prompts) -> torch.Tensor:
    """open_clip's own text-tower forward (full 77 tokens, no trimming), normalised."""
    ids = clf.tokenizer(list(prompts))
    with torch.no_grad():
        return F.normalize(clf.text_encoder(ids), dim=-1)


def test_builds_from_registry(tiny_ckpt):
    clf = MODELS.build(dict(type='OpenCLIPTextClassifier', model_name='QM-Tiny',
                            pretrained=tiny_ckpt, query_dims=16))
    assert isinstance(clf, OpenCLIPTextClassifier)
    assert clf.text_dims == 64 and clf.query_proj.in_features == 16


def test_same_vocabulary_runs_tower_once(make_clf, count_tower):
    clf = make_clf().eval()
    counter = count_tower(clf)
    first = clf.encode_vocabulary(NAMES)
    second = clf.encode_vocabulary(list(NAMES))
    assert counter.calls == 1
    assert torch.equal(first, second)
    second.zero_()  # callers get copies: the cache is not corrupted
    assert torch.equal(clf.encode_vocabulary(NAMES), first)
    # A sampled vocabulary with one new entry encodes only that entry.
    third = clf.encode_vocabulary(['dog', 'horse', 'cat'])
    assert counter.calls == 2 and counter.batch_sizes[-1] == 1
    assert torch.equal(third[0], first[1]) and torch.equal(third[2], first[0])


def test_cache_is_also_used_in_training_with_frozen_tower(make_clf, count_tower):
    clf = make_clf().train()
    counter = count_tower(clf)
    emb = clf.encode_vocabulary(NAMES)
    clf.encode_vocabulary(NAMES)
    assert counter.calls == 1
    assert not emb.requires_grad and emb.grad_fn is None  # no graph kept in the cache


def test_different_templates_give_different_cache_entries(make_clf, count_tower):
    clf = make_clf().eval()
    counter = count_tower(clf)
    simple = clf.encode_vocabulary(NAMES, task='semantic')
    assert len(clf.cache) == len(NAMES)
    all_prompt = clf.encode_vocabulary(NAMES, task='semantic', templates='all')
    assert len(clf.cache) == 2 * len(NAMES) and counter.calls == 2
    assert not torch.allclose(simple, all_prompt)
    # Per-task template sets from the config.
    clf2 = make_clf(task_templates={'instance': 'all'}).eval()
    assert torch.allclose(clf2.encode_vocabulary(NAMES, task='instance'), all_prompt, atol=1e-6)
    assert torch.allclose(clf2.encode_vocabulary(NAMES, task='semantic'), simple, atol=1e-6)


def test_embeddings_are_unit_norm(make_clf):
    clf = make_clf(templates='photo').eval()
    for texts, task in ((NAMES, 'semantic'), (['the man on the left'], 'referring'),
                        (['the most salient object'], 'foreground')):
        emb = clf.encode_vocabulary(texts, task=task)
        assert emb.shape == (len(texts), 64) and emb.dtype == torch.float32
        assert torch.allclose(emb.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)


def test_template_ensembling_matches_open_clip_forward(make_clf):
    clf = make_clf(templates='photo').eval()
    emb = clf.encode_vocabulary(['traffic_light'])[0]
    per_template = _tower_embed(clf, [t.format('traffic light') for t in
                                      clf.default_templates])
    expected = F.normalize(per_template.mean(dim=0), dim=-1)
    assert torch.allclose(emb, expected, atol=1e-5)


def test_synonyms_rule_equal_weight_mean(make_clf):
    clf = make_clf().eval()
    both, person, people = clf.encode_vocabulary(['person/people', 'person', 'people'])
    assert torch.allclose(both, F.normalize(person + people, dim=-1), atol=1e-6)
    listed = clf.encode_vocabulary([['person', 'people']])[0]
    assert torch.allclose(listed, both, atol=1e-6)
    assert not torch.allclose(both, person, atol=1e-3)


def test_referring_texts_are_raw_and_truncated_with_warning(make_clf):
    clf = make_clf(templates='photo').eval()
    sentence = 'the man/woman on the_left'  # no synonym split, no cleaning for raw texts
    emb = clf.encode_vocabulary([sentence], task='referring')[0]
    assert torch.allclose(emb, _tower_embed(clf, [sentence])[0], atol=1e-5)
    long_sentence = ' '.join(['a very long referring expression'] * 30)
    with pytest.warns(UserWarning, match='truncated'):
        long_emb = clf.encode_vocabulary([long_sentence], task='referring')
    assert torch.allclose(long_emb.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_logits_shape_padding_and_focal_init(make_clf):
    clf = make_clf(prior_prob=0.01)
    assert math.isclose(torch.sigmoid(clf.logit_bias).item(), 0.01, rel_tol=1e-4)
    assert math.isclose(clf.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)
    queries = torch.randn(2, 5, 32)
    texts = F.normalize(torch.randn(2, 3, 64), dim=-1)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    logits = clf(queries, texts, valid)
    assert logits.shape == (2, 5, 3)
    assert torch.all(logits[1, :, 1:] == -1e4) and torch.isfinite(logits).all()
    shared = clf(queries, texts[0])
    assert shared.shape == (2, 5, 3)
    assert torch.allclose(shared[0], logits[0], atol=1e-5)
    # cosine logits are bounded by the scale around the bias
    assert (logits[0] - clf.logit_bias).abs().max() <= clf.logit_scale.exp() + 1e-4


def test_forward_rejects_bad_shapes(make_clf):
    clf = make_clf()
    with pytest.raises(ValueError, match='query_feats'):
        clf(torch.randn(2, 5, 31), torch.randn(3, 64))
    with pytest.raises(ValueError, match='text_embeds'):
        clf(torch.randn(2, 5, 32), torch.randn(3, 63))
    with pytest.raises(ValueError, match='text_valid'):
        clf(torch.randn(2, 5, 32), torch.randn(2, 3, 64), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(KeyError, match='unknown task'):
        clf.encode_vocabulary(['cat'], task='captioning')
    with pytest.raises(TypeError, match=r'texts\[1\]'):
        clf.encode_vocabulary(['cat', 3])
    with pytest.raises(TypeError, match=r'texts\[0\]'):
        clf.encode_vocabulary([['cat', {'a': 1}]])
    with pytest.raises(KeyError, match='task_templates'):
        make_clf(task_templates={'caption': 'all'})


def test_gradients_reach_projection_not_frozen_tower(make_clf):
    clf = make_clf().train()
    texts = clf.encode_vocabulary(NAMES)
    logits = clf(torch.randn(2, 4, 32), texts)
    logits.sigmoid().sum().backward()
    assert clf.query_proj.weight.grad is not None and clf.query_proj.weight.grad.abs().sum() > 0
    assert clf.logit_scale.grad is not None and clf.logit_bias.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in clf.text_encoder.parameters())
    assert not clf.text_encoder.training  # frozen tower stays in eval mode


def test_context_vectors_get_gradients_and_bypass_cache(make_clf, count_tower):
    clf = make_clf(num_context_tokens=4).train()
    counter = count_tower(clf)
    texts = clf.encode_vocabulary(NAMES)
    clf.encode_vocabulary(NAMES)
    assert counter.calls == 2  # no cache while the context is trained
    clf(torch.randn(1, 3, 32), texts).sum().backward()
    assert clf.context_vectors.grad is not None and clf.context_vectors.grad.abs().sum() > 0
    assert all(p.grad is None for p in clf.text_encoder.parameters())
    # Referring texts get no context: cached even in training.
    clf.encode_vocabulary(['the red car'], task='referring')
    clf.encode_vocabulary(['the red car'], task='referring')
    assert counter.calls == 3
    clf.eval()
    clf.encode_vocabulary(NAMES)
    clf.encode_vocabulary(NAMES)
    assert counter.calls == 4


def test_context_vectors_fill_the_placeholder_slots(make_clf):
    clf = make_clf(num_context_tokens=3).eval()
    placeholder = clf.tokenizer.encode('x')[0]
    with torch.no_grad():
        clf.context_vectors.copy_(clf.text_encoder.token_embedding.weight[placeholder].expand(3,
                                                                                          -1))
    emb = clf.encode_vocabulary(['cat'])[0]
    assert torch.allclose(emb, _tower_embed(clf, ['x x x cat.'])[0], atol=1e-5)


def test_fine_tuning_with_lr_multiplier(make_clf):
    clf = make_clf(freeze_text_encoder=False).train()
    texts = clf.encode_vocabulary(NAMES)
    assert texts.requires_grad
    clf(torch.randn(1, 3, 32), texts).sum().backward()
    grads = [p.grad for p in clf.text_encoder.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    wrapper = build_optim_wrapper(clf, dict(
        optimizer=dict(type='AdamW', lr=1e-3),
        paramwise_cfg=dict(custom_keys={'text_encoder': dict(lr_mult=0.1)})))
    tower_ids = {id(p) for p in clf.text_encoder.parameters()}
    for group in wrapper.optimizer.param_groups:
        expected = 1e-4 if id(group['params'][0]) in tower_ids else 1e-3
        assert math.isclose(group['lr'], expected, rel_tol=1e-6)


def test_trainable_tower_cache_cleared_on_mode_switch(make_clf, count_tower):
    clf = make_clf(freeze_text_encoder=False).eval()
    counter = count_tower(clf)
    clf.encode_vocabulary(NAMES)
    assert len(clf.cache) == len(NAMES)
    clf.train()
    assert len(clf.cache) == 0
    clf.encode_vocabulary(NAMES)
    clf.encode_vocabulary(NAMES)
    assert counter.calls == 3  # two training passes, no cache


def test_checkpoint_roundtrip_gives_identical_embeddings(make_clf, tmp_path):
    clf = make_clf(templates='photo').eval()
    reference = clf.encode_vocabulary(NAMES).clone()
    # The tower matches open_clip's own loading of the same file.
    full = open_clip.create_model('QM-Tiny', pretrained=clf.pretrained)
    ids = clf.tokenizer(['a photo of a cat.'])
    with torch.no_grad():
        assert torch.allclose(clf.text_encoder(ids), full.encode_text(ids), atol=1e-6)
    # mmengine-style checkpoint of the classifier, loaded back through `pretrained`.
    path = tmp_path / 'classifier.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': clf.state_dict()}, path)
    reloaded = make_clf(templates='photo', pretrained=str(path)).eval()
    assert torch.equal(reloaded.encode_vocabulary(NAMES), reference)
    # load_state_dict into a random-init classifier: the stale cache is dropped.
    fresh = make_clf(templates='photo', pretrained=None).eval()
    stale = fresh.encode_vocabulary(NAMES).clone()
    assert not torch.allclose(stale, reference)
    fresh.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
    assert torch.equal(fresh.encode_vocabulary(NAMES), reference)


def test_init_weights_restores_pretrained_tower(make_clf):
    clf = make_clf().eval()
    reference = clf.encode_vocabulary(NAMES).clone()
    with torch.no_grad():  # what a parent's blanket init_cfg would do
        for param in clf.text_encoder.parameters():
            param.normal_()
    clf.init_weights()
    assert torch.allclose(clf.encode_vocabulary(NAMES), reference, atol=1e-6)


def test_large_vocabulary_encodes_in_chunks(make_clf, count_tower):
    names = [f'object kind number {i}' for i in range(1203)]  # LVIS-sized
    chunked = make_clf(chunk_size=256).eval()
    counter = count_tower(chunked)
    emb = chunked.encode_vocabulary(names)
    assert counter.calls == math.ceil(1203 / 256)
    assert max(counter.batch_sizes) == 256
    single = make_clf(chunk_size=2048).eval()
    assert torch.allclose(emb, single.encode_vocabulary(names), atol=1e-5)
    assert emb.shape == (1203, 64)


def test_cache_moves_with_module(make_clf):
    clf = make_clf().eval()
    clf.encode_vocabulary(NAMES)
    clf.double()
    assert clf.cache.gather([clf.cache.keys()[0]]).dtype == torch.float64
    clf.float()
    emb = clf.encode_vocabulary(NAMES)
    assert emb.device == clf.logit_bias.device


def test_batch_vocabularies_are_padded_and_deduplicated(make_clf, count_tower):
    clf = make_clf().eval()
    counter = count_tower(clf)
    embeds, valid = clf.encode_batch_vocabularies(
        [['cat', 'dog'], ['dog'], ['the dog on the left']],
        ['semantic', 'semantic', 'referring'])
    assert embeds.shape == (3, 2, 64)
    assert valid.tolist() == [[True, True], [True, False], [True, False]]
    assert counter.calls == 2  # one pass per prompt rule, 'dog' encoded once
    assert torch.equal(embeds[1, 0], embeds[0, 1]) and torch.all(embeds[1, 1] == 0)
    logits = clf(torch.randn(3, 4, 32), embeds, valid)
    assert logits.shape == (3, 4, 2) and torch.all(logits[2, :, 1] == -1e4)


def test_own_init_cfg_does_not_overwrite_pretrained_tower(make_clf):
    """An init_cfg aimed at the projection (layer='Linear') also matches the tower's MLP layers;
    the pretrained tower must survive it while the projection is re-initialised."""
    clf = make_clf(init_cfg=dict(type='Constant', layer='Linear', val=0.5, bias=0.0)).eval()
    reference = {k: v.clone() for k, v in clf.text_encoder.state_dict().items()}
    clf.init_weights()
    for key, value in clf.text_encoder.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert torch.all(clf.query_proj.weight == 0.5)
