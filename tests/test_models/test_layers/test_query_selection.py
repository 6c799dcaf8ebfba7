"""Tests of the conditional query selection (two-stage encoder proposals)."""
import pytest
import torch
from mmdet.models.layers.transformer.utils import inverse_sigmoid

from mmquerymeld.models.layers import (ConditionalQueryGenerator, encoder_output_proposals,
                                       masks_to_anchor_logits)


def test_encoder_output_proposals_grid():
    shapes = torch.tensor([[4, 4], [2, 2]])
    props, valid = encoder_output_proposals(shapes, batch_size=2, base_scale=0.05)
    assert props.shape == (2, 20, 4) and valid.shape == (2, 20, 1)
    boxes = props.sigmoid()
    # first cell of level 0: centre (0.125, 0.125), side 0.05; level 1: side 0.1
    torch.testing.assert_close(boxes[0, 0], torch.tensor([0.125, 0.125, 0.05, 0.05]))
    torch.testing.assert_close(boxes[0, 16], torch.tensor([0.25, 0.25, 0.1, 0.1]))
    assert valid.all() and torch.isfinite(props).all()


def test_selection_takes_topk_scores_and_skips_invalid():
    torch.manual_seed(0)
    gen = ConditionalQueryGenerator(embed_dims=16, num_queries=3)
    shapes = torch.tensor([[4, 4], [2, 2]])
    memory = torch.randn(2, 20, 16)
    fixed = torch.arange(20.).repeat(2, 1)
    fixed[1] = fixed[1].flip(0)
    out = gen(memory, shapes, lambda feats: fixed + 0 * feats.sum(-1))
    assert out['topk_index'][0].tolist() == [19, 18, 17]
    assert out['topk_index'][1].tolist() == [0, 1, 2]
    feats = gen.enc_output_norm(gen.enc_output(memory))
    torch.testing.assert_close(out['content'][0], feats[0, [19, 18, 17]])
    assert not out['content'].requires_grad and out['content_undetached'].requires_grad
    # the box head starts at zero: anchors are the grid proposals
    props, _ = encoder_output_proposals(shapes, 2)
    torch.testing.assert_close(out['anchors'][1], props[1, :3])
    # a proposal on the border (invalid) is never selected, whatever its score
    border = torch.tensor([[1, 60]])  # 60 cells: first/last centres < 0.01 / > 0.99
    props, valid = encoder_output_proposals(border, 1)
    assert not valid.all() and valid.any()
    gen1 = ConditionalQueryGenerator(embed_dims=16, num_queries=1)
    score = torch.zeros(1, 60)
    score[0, 0] = 100.0  # invalid location gets the best score
    out = gen1(torch.randn(1, 60, 16), border, lambda f: score + 0 * f.sum(-1))
    assert out['topk_index'].item() != 0


def test_selection_rejects_too_many_queries():
    gen = ConditionalQueryGenerator(embed_dims=8, num_queries=30)
    with pytest.raises(ValueError, match='conditional queries'):
        gen(torch.randn(1, 20, 8), torch.tensor([[4, 4], [2, 2]]), lambda f: f.sum(-1))


def test_mask_enhanced_anchors():
    """Boxes of crafted masks, computed by hand (cxcywh normalised by the 16 x 8 mask frame):
    asymmetric, so swapped axes or a wrong corner give different numbers."""
    h, w = 8, 16
    masks = torch.full((2, 3, h, w), -5.0)
    masks[0, 0, 1:3, 2:10] = 5.0  # rows 1-2, cols 2-9: xyxy (2, 1, 10, 3)
    masks[0, 1, 7, 15] = 0.01  # one pixel in the bottom-right corner, logit just above 0
    masks[0, 2, 3:5, 3:5] = -0.01  # just below 0 everywhere: empty -> fallback
    masks[1, 0, 0, 0] = 5.0  # two blobs: the box spans both, xyxy (0, 0, 13, 6)
    masks[1, 0, 4:6, 10:13] = 5.0
    masks[1, 1] = 5.0  # the whole frame
    # masks[1, 2]: empty -> fallback
    fallback_boxes = torch.tensor([[[0.3, 0.6, 0.1, 0.2]] * 3, [[0.7, 0.2, 0.4, 0.05]] * 3])
    out = masks_to_anchor_logits(masks, inverse_sigmoid(fallback_boxes)).sigmoid()
    assert out.shape == (2, 3, 4)
    expected = torch.tensor([
        [[6 / 16, 2 / 8, 8 / 16, 2 / 8], [15.5 / 16, 7.5 / 8, 1 / 16, 1 / 8], [0.3, 0.6, 0.1, 0.2]],
        [[6.5 / 16, 3 / 8, 13 / 16, 6 / 8], [0.5, 0.5, 1.0, 1.0], [0.7, 0.2, 0.4, 0.05]],
    ])
    # float32 log/exp round trip: ~1e-6; a full-frame box is clamped to inverse_sigmoid's
    # eps=1e-3 (1 -> 0.999), hence atol 2e-3 there
    full = torch.zeros_like(expected, dtype=torch.bool)
    full[1, 1, 2:] = True
    torch.testing.assert_close(out[~full], expected[~full], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[full], expected[full], atol=2e-3, rtol=0)


def test_proposal_size_follows_resolution_not_level_order():
    # the pixel decoder lists the coarsest level first; the finest map must still propose the
    # smallest boxes (Deformable DETR / Mask DINO: 0.05 at stride 8, doubling per level)
    shapes = torch.tensor([[2, 2], [4, 4], [8, 8]])
    props, _ = encoder_output_proposals(shapes, batch_size=1, base_scale=0.05)
    sides = props[0, :, 2].sigmoid()
    torch.testing.assert_close(sides[:4], torch.full((4, ), 0.2))  # 2x2 (stride 32)
    torch.testing.assert_close(sides[4:20], torch.full((16, ), 0.1))  # 4x4 (stride 16)
    torch.testing.assert_close(sides[20:], torch.full((64, ), 0.05))  # 8x8 (stride 8)


def test_padding_proposals_are_not_selected():
    torch.manual_seed(0)
    shapes = torch.tensor([[2, 2], [4, 4], [8, 8]])
    gen = ConditionalQueryGenerator(embed_dims=16, num_queries=20)
    # image 1 covers the top-left quarter of the padded frame: 1 + 4 + 16 = 21 proposals
    ratios = torch.tensor([[1.0, 1.0], [0.5, 0.5]])
    props, valid = encoder_output_proposals(shapes, 2, valid_ratios=ratios)
    assert int(valid[0].sum()) == 84 and int(valid[1].sum()) == 21
    # padding proposals get the best scores, yet are never selected
    centres = props[1, :, :2].sigmoid()
    in_padding = (centres >= 0.5).any(-1)
    score = in_padding.float()[None].repeat(2, 1) * 100.0
    out = gen(torch.randn(2, 84, 16), shapes, lambda f: score + 0 * f.sum(-1), valid_ratios=ratios)
    assert not in_padding[out['topk_index'][1]].any()
    assert in_padding[out['topk_index'][0]].all()  # image 0 has no padding: best scores win
    with pytest.raises(ValueError, match='valid_ratios'):
        encoder_output_proposals(shapes, 2, valid_ratios=torch.ones(3, 2))
