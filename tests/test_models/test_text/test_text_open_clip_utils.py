"""Tests of the open_clip glue: tiny architecture, text-only tower, weights, tokenising."""
import argparse

import open_clip
import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import TextTransformer

from mmquerymeld.models.text import QM_TINY_NAME, build_text_tower, load_text_tower_weights
from mmquerymeld.models.text.open_clip_utils import (find_tower_prefix, get_tokenizer,
                                                     read_state_dict, resolve_pretrained,
                                                     text_embed_dim, tokenize)


def test_tiny_model_is_registered_in_open_clip():
    assert QM_TINY_NAME in open_clip.list_models()
    cfg = open_clip.get_model_config(QM_TINY_NAME)
    assert cfg['text_cfg'] == {'context_length': 77, 'vocab_size': 49408, 'width': 64,
                               'heads': 2, 'layers': 2}
    assert cfg['embed_dim'] == 64


def test_text_tower_is_built_without_vision_tower():
    tower, cfg = build_text_tower(QM_TINY_NAME)
    assert isinstance(tower, TextTransformer)
    assert not any(name.startswith('visual') for name, _ in tower.named_parameters())
    assert len(tower.transformer.resblocks) == 2 and tower.width == 64
    assert text_embed_dim(tower, cfg) == 64
    with pytest.raises(KeyError, match='unknown open_clip architecture'):
        build_text_tower('No-Such-Arch')


def test_standard_architecture_text_dims_without_weights():
    # RN50's text tower (63M params) is built from its config only: a real architecture name.
    tower, cfg = build_text_tower('RN50')
    assert text_embed_dim(tower, cfg) == 1024 and tower.width == 512


def test_tokenizer_is_offline_simple_tokenizer_and_flags_truncation():
    tokenizer = get_tokenizer(QM_TINY_NAME, 77)
    assert isinstance(tokenizer, SimpleTokenizer)
    long_text = ' '.join(['word'] * 100)
    fits = ' '.join(['word'] * 75)  # 75 words + start + end = exactly 77 tokens
    ids, truncated = tokenize(tokenizer, ['a cat', long_text, fits], 77)
    assert ids.shape == (3, 77)
    assert truncated.tolist() == [False, True, False]
    assert ids[1, -1] == tokenizer.eot_token_id  # the cut sequence still ends with EOT


def test_loads_open_clip_state_dict_matching_open_clip(tiny_ckpt):
    tower, _ = build_text_tower(QM_TINY_NAME)
    load_text_tower_weights(tower, tiny_ckpt)
    full = open_clip.create_model(QM_TINY_NAME, pretrained=tiny_ckpt)
    ids = open_clip.get_tokenizer(QM_TINY_NAME)(['a photo of a cat.', 'dog'])
    with torch.no_grad():
        assert torch.allclose(tower(ids), full.encode_text(ids), atol=1e-6)


def test_loads_custom_text_and_mmengine_checkpoints(tiny_ckpt, tmp_path):
    reference, _ = build_text_tower(QM_TINY_NAME)
    load_text_tower_weights(reference, tiny_ckpt)
    text_sd = reference.state_dict()
    # CustomTextCLIP layout: the tower under 'text.'.
    custom = tmp_path / 'custom_text.pt'
    torch.save({'text.' + k: v for k, v in text_sd.items()}, custom)
    # An mmengine checkpoint of a whole detector, with pickled non-tensor meta.
    mmengine_ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {'cfg': argparse.Namespace(lr=1)},
                'state_dict': {'head.text_encoder.tower.' + k: v
                               for k, v in text_sd.items()}}, mmengine_ckpt)
    for path in (custom, mmengine_ckpt):
        tower, _ = build_text_tower(QM_TINY_NAME)
        if path == mmengine_ckpt:
            with pytest.warns(UserWarning, match='weights_only=False'):
                load_text_tower_weights(tower, str(path))
        else:
            load_text_tower_weights(tower, str(path))
        for key, value in tower.state_dict().items():
            assert torch.equal(value, text_sd[key]), (path, key)


def test_bad_checkpoints_name_file_and_key(tiny_ckpt, tmp_path):
    state = read_state_dict(tiny_ckpt)
    assert find_tower_prefix(state, ['token_embedding.weight']) == ''
    partial = tmp_path / 'partial.pt'
    torch.save({k: v for k, v in state.items() if 'ln_final' not in k}, partial)
    tower, _ = build_text_tower(QM_TINY_NAME)
    with pytest.raises(KeyError, match=r'partial\.pt.*ln_final'):
        load_text_tower_weights(tower, str(partial))
    wrong = tmp_path / 'wrong_shape.pt'
    bad = dict(state)
    bad['text_projection'] = torch.zeros(64, 32)
    torch.save(bad, wrong)
    with pytest.raises(ValueError, match=r'wrong_shape\.pt: text_projection has shape'):
        load_text_tower_weights(tower, str(wrong))
    vision_only = tmp_path / 'vision_only.pt'
    torch.save({k: v for k, v in state.items() if k.startswith('visual.')}, vision_only)
    with pytest.raises(KeyError, match=r'vision_only\.pt: no text tower'):
        load_text_tower_weights(tower, str(vision_only))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        read_state_dict(str(tmp_path / 'absent.pt'))


def test_pretrained_tag_resolution_errors_list_the_tags():
    with pytest.raises(FileNotFoundError, match='laion2b_s34b_b88k'):
        resolve_pretrained('ViT-B-16', 'no_such_tag')
