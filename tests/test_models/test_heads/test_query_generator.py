"""MeldQueryGenerator: the learnable anchors' initialisation (issue 11's anchoring suspect)."""
import pytest
import torch

from mmquerymeld.models.heads.query_generator import MeldQueryGenerator


def _anchor_boxes(init: str) -> torch.Tensor:
    gen = MeldQueryGenerator(embed_dims=32, num_learnable=8, num_conditional=4,
                             learnable_anchor_init=init)
    gen.init_learnable_anchors()
    return gen.learnable_anchors.weight.detach().sigmoid()  # [Nl, 4] cxcywh


def test_random_init_spreads_quarter_image_anchors():
    torch.manual_seed(0)
    boxes = _anchor_boxes('random')
    assert torch.allclose(boxes[:, 2:], torch.full_like(boxes[:, 2:], 0.25), atol=1e-6)
    assert boxes[:, :2].std(0).min() > 0.1  # centres spread, not stacked
    assert ((boxes[:, :2] >= 0.02 - 1e-6) & (boxes[:, :2] <= 0.98 + 1e-6)).all()


def test_image_init_makes_every_anchor_the_whole_image():
    boxes = _anchor_boxes('image')
    expected = torch.tensor([0.5, 0.5, 0.99, 0.99]).expand_as(boxes)
    assert torch.allclose(boxes, expected, atol=1e-6)
    assert torch.isfinite(_anchor_boxes('image').logit()).all()


def test_unknown_init_names_the_choices():
    with pytest.raises(ValueError, match=r"learnable_anchor_init.*'random', 'image'.*'grid'"):
        MeldQueryGenerator(num_learnable=2, num_conditional=2, learnable_anchor_init='grid')


def test_head_passes_the_init_through_init_weights(tiny_model):
    model = tiny_model(learnable_anchor_init='image')  # built and init_weights() run
    boxes = model.head.query_generator.learnable_anchors.weight.detach().sigmoid()
    assert torch.allclose(boxes[:, 2:], torch.full_like(boxes[:, 2:], 0.99), atol=1e-6)
