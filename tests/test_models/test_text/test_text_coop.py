"""Tests of the package's one text-tower forward (CoOp context, padding trimming) against
open_clip's own ``encode_text``."""
import open_clip
import torch
from torch.testing import assert_close

from mmquerymeld.models.text.coop import (can_trim_padding, encode_text_tokens,
                                          supports_token_forward)

PROMPTS = ['a photo of a cat.', 'dog', 'there is the traffic light in the scene.']


def _clip_and_ids(tiny_ckpt):
    model = open_clip.create_model('QM-Tiny', pretrained=tiny_ckpt).eval()
    tower = open_clip.model._build_text_tower(64, open_clip.get_model_config('QM-Tiny')
                                              ['text_cfg'])
    tower.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith('visual.') and k != 'logit_scale'})
    ids = open_clip.get_tokenizer('QM-Tiny')(PROMPTS)
    return model, tower.eval(), ids


def test_matches_open_clip_encode_text_without_context(tiny_ckpt):
    model, tower, ids = _clip_and_ids(tiny_ckpt)
    assert supports_token_forward(tower) and can_trim_padding(tower)
    with torch.no_grad():
        reference = model.encode_text(ids)
        assert_close(encode_text_tokens(tower, ids), reference, rtol=1e-4, atol=1e-5)
        # trailing padding cut (pooling at the end token under a causal mask): same features
        assert_close(encode_text_tokens(tower, ids, pad_id=0), reference, rtol=1e-4, atol=1e-5)
        # a zero-length context changes nothing
        empty = tower.token_embedding.weight.new_zeros(0, tower.width)
        assert_close(encode_text_tokens(tower, ids, empty), reference, rtol=1e-4, atol=1e-5)


def test_context_replaces_the_slots_after_the_start_token(tiny_ckpt):
    model, tower, _ = _clip_and_ids(tiny_ckpt)
    tokenizer = open_clip.get_tokenizer('QM-Tiny')
    with_words = tokenizer(['red big cat.'])
    placeholders = tokenizer(['x x cat.'])
    words = with_words[0, 1:3]
    context = tower.token_embedding.weight[words].detach()  # the embeddings of 'red big'
    with torch.no_grad():
        out = encode_text_tokens(tower, placeholders, context, pad_id=0)
        assert_close(out, model.encode_text(with_words), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out, model.encode_text(placeholders), atol=1e-3)
    # gradients reach the context, as a learnable CoOp context needs
    context = context.clone().requires_grad_(True)
    encode_text_tokens(tower, placeholders, context).sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0


def test_bidirectional_or_class_token_towers_are_not_mirrored():
    cfg = dict(open_clip.get_model_config('QM-Tiny')['text_cfg'], embed_cls=True)
    coca_like = open_clip.model._build_text_tower(64, cfg)
    assert not supports_token_forward(coca_like)
    bidir = open_clip.model._build_text_tower(
        64, dict(open_clip.get_model_config('QM-Tiny')['text_cfg'], no_causal_mask=True))
    assert supports_token_forward(bidir) and not can_trim_padding(bidir)
