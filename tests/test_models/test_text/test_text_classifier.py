"""Tests of QueryTextClassifier: logits shape, padding, focal-prior init, scale clamp, maths."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmdet.registry import MODELS
from mmquerymeld.models.text import QueryTextClassifier


def test_builds_from_registry():
    clf = MODELS.build(dict(type='QueryTextClassifier', query_dims=16, text_dims=64))
    assert isinstance(clf, QueryTextClassifier)
    assert clf.text_dims == 64 and clf.query_proj.in_features == 16
    assert clf.query_proj.out_features == 64


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
    assert torch.all(logits[1, :, 0] != -1e4)  # valid entries are not masked
    unmasked = clf(queries, texts)
    assert torch.equal(unmasked[0], logits[0]) and torch.equal(unmasked[1, :, 0], logits[1, :, 0])
    shared = clf(queries, texts[0])
    assert shared.shape == (2, 5, 3)
    assert torch.allclose(shared[0], logits[0], atol=1e-5)
    # cosine logits are bounded by the scale around the bias
    assert (logits[0] - clf.logit_bias).abs().max() <= clf.logit_scale.exp() + 1e-4


def test_logits_are_scaled_cosine_plus_bias(make_clf):
    """The maths of the former OpenCLIPTextClassifier, op for op: bit-identical logits."""
    clf = make_clf(init_logit_scale=20.0, max_logit_scale=50.0)
    torch.manual_seed(1)
    queries, texts = torch.randn(2, 4, 32), torch.randn(2, 3, 64)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    with torch.no_grad():
        clf.logit_bias.fill_(-1.5)
        proj = F.normalize(clf.query_proj(queries), dim=-1)
        cos = torch.einsum('bqd,bkd->bqk', proj, F.normalize(texts, dim=-1))
        expected = cos * torch.tensor(math.log(20.0)).exp() - 1.5
        expected[0, :, 2] = -1e4
        assert torch.equal(clf(queries, texts, valid), expected)
        # the scale is clamped at max_logit_scale
        clf.logit_scale.fill_(math.log(1e3))
        clamped = clf(queries, texts)
        assert torch.allclose(clamped, cos * 50.0 - 1.5, atol=1e-4)
    dot = make_clf(normalize_queries=False)
    with torch.no_grad():
        raw = torch.einsum('bqd,bkd->bqk', dot.query_proj(queries), F.normalize(texts, dim=-1))
        assert torch.allclose(dot(queries, texts), raw * (1 / 0.07) + dot.logit_bias,
                              atol=1e-4)


def test_fixed_logit_scale_and_bad_arguments(make_clf):
    clf = make_clf(learnable_logit_scale=False)
    clf(torch.randn(1, 2, 32), torch.randn(3, 64)).sum().backward()
    assert clf.logit_scale.grad is None and clf.logit_bias.grad is not None
    with pytest.raises(ValueError, match='prior_prob'):
        make_clf(prior_prob=1.0)
    with pytest.raises(ValueError, match='init_logit_scale'):
        make_clf(init_logit_scale=200.0)


def test_forward_rejects_bad_shapes(make_clf):
    clf = make_clf()
    with pytest.raises(ValueError, match='query_feats'):
        clf(torch.randn(2, 5, 31), torch.randn(3, 64))
    with pytest.raises(ValueError, match='text_embeds'):
        clf(torch.randn(2, 5, 32), torch.randn(3, 63))
    with pytest.raises(ValueError, match='text_embeds'):
        clf(torch.randn(2, 5, 32), torch.randn(3, 3, 64))
    with pytest.raises(ValueError, match='text_valid'):
        clf(torch.randn(2, 5, 32), torch.randn(2, 3, 64), torch.ones(2, 4, dtype=torch.bool))


def test_follows_input_dtype(make_clf):
    clf = make_clf().double()
    logits = clf(torch.randn(1, 2, 32, dtype=torch.float64), torch.randn(3, 64))
    assert logits.dtype == torch.float64


def test_former_encoder_arguments_say_where_they_moved(make_clf):
    with pytest.raises(TypeError, match=r'text_encoder\.model_name.*text_classifier\.model_name'):
        make_clf(model_name='ViT-B-16')
    with pytest.raises(TypeError, match=r'text_encoder\.freeze_tower'):
        make_clf(freeze_text_encoder=False)
    with pytest.raises(TypeError, match=r"unexpected arguments \['no_such_arg'\]$"):
        make_clf(no_such_arg=1)


@pytest.mark.parametrize('normalize_queries', [True, False])
def test_max_logits_equal_the_max_of_the_valid_logits_in_chunks(make_clf, normalize_queries):
    """max_logits: the best logit over valid texts, as forward + mask + max would give, in
    chunks of queries, for per-sample, shared and padded vocabularies (a sample without texts
    scores -inf)."""
    clf = make_clf(normalize_queries=normalize_queries)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained-looking projection bias (init leaves it small)
        clf.query_proj.bias.normal_(0, 0.5, generator=g)
    queries = torch.randn(3, 37, 32, generator=g)
    texts = F.normalize(torch.randn(3, 11, 64, generator=g), dim=-1)
    valid = torch.ones(3, 11, dtype=torch.bool)
    valid[1, 4:] = False
    valid[2] = False
    with torch.no_grad():
        full = clf(queries, texts, valid).masked_fill(~valid[:, None], float('-inf')).amax(-1)
        shared = clf(queries, texts[0]).amax(-1)
    best = clf.max_logits(queries, texts, valid, max_elements=11 * 5)  # chunks of 5 queries
    assert best.shape == (3, 37) and not best.requires_grad
    torch.testing.assert_close(best[:2], full[:2], rtol=1e-5, atol=1e-4)
    assert torch.isneginf(best[2]).all()
    torch.testing.assert_close(clf.max_logits(queries, texts[0]), shared, rtol=1e-5, atol=1e-4)
    # the winner differs between queries: the maximum is per query, not one for all
    assert full[0].argmax() == best[0].argmax() and best[0].std() > 0.1
