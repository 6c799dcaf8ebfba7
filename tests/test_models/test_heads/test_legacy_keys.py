"""Checkpoints of the first layout load into the restructured head (issue 8, behaviour kept).

``tests/data/legacy_v1_tiny_keys.json`` lists every state-dict key and shape of the tiny demo
model as the first layout (commit 9dd47e9) saved it; the test builds such a checkpoint with
distinct values per key and loads it strictly.
"""
import json
import os.path as osp

import pytest
import torch

from mmquerymeld.models.heads.legacy import remap_legacy_head_keys

KEYS_FILE = osp.join(osp.dirname(__file__), '..', '..', 'data', 'legacy_v1_tiny_keys.json')


def _legacy_state_dict():
    with open(KEYS_FILE) as f:
        shapes = json.load(f)
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=gen) if s else torch.randn((), generator=gen)
            for k, s in shapes.items()}


def test_first_layout_checkpoint_loads_strictly_and_values_land_in_place(tiny_model):
    model = tiny_model()
    old = _legacy_state_dict()
    # integer buffers (e.g. batch-norm counters) keep their dtype when loaded
    old = {k: v.to(model.state_dict().get(k, v).dtype) if k in model.state_dict() else v
           for k, v in old.items()}
    model.load_state_dict(dict(old), strict=True)
    new = model.state_dict()
    moved = {
        'head.learnable_content.weight': 'head.query_generator.learnable_content.weight',
        'head.learnable_anchors.weight': 'head.query_generator.learnable_anchors.weight',
        'head.query_selector.enc_output.weight':
        'head.query_generator.query_selector.enc_output.weight',
        'head.text_classifier.text_encoder.token_embedding.weight':
        'head.text_encoder.tower.token_embedding.weight',
        'head.text_classifier.logit_scale': 'head.text_classifier.logit_scale',
    }
    for old_key, new_key in moved.items():
        assert torch.equal(new[new_key], old[old_key]), (old_key, new_key)
    # every old value is somewhere in the new state dict, under exactly one new key
    assert len(new) == len(old)


def test_remap_is_a_no_op_on_the_new_layout_and_refuses_a_mixture(tiny_model):
    model = tiny_model()
    sd = model.state_dict()
    keys = list(sd)
    assert list(remap_legacy_head_keys(sd, 'head.')) == keys
    sd['head.learnable_content.weight'] = sd['head.query_generator.learnable_content.weight']
    with pytest.raises(KeyError, match='both the old and the new'):
        remap_legacy_head_keys(sd, 'head.')
