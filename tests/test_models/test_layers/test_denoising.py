"""Tests of the open-vocabulary denoising queries and their attention mask."""
import pytest
import torch

from mmquerymeld.models.layers import OpenVocabDenoisingGenerator, build_dn_attn_mask


def test_dn_attn_mask_blocks():
    groups, size, matching = 3, 2, 5
    mask = build_dn_attn_mask(groups, size, matching)
    pad = groups * size
    assert mask.shape == (pad + matching, pad + matching) and mask.dtype == torch.bool
    # matching queries never see denoising queries, but see each other
    assert mask[pad:, :pad].all()
    assert not mask[pad:, pad:].any()
    # denoising queries never see the matching queries
    assert mask[:pad, pad:].all()
    # a group sees itself and no other group
    for g in range(groups):
        rows = slice(g * size, (g + 1) * size)
        assert not mask[rows, rows].any()
        others = [i for i in range(pad) if i // size != g]
        assert mask[rows][:, others].all()
    # Mask DINO's variant: denoising queries may read the matching ones
    loose = build_dn_attn_mask(groups, size, matching, dn_see_matching=True)
    assert not loose[:pad, pad:].any() and loose[pad:, :pad].all()


def _inputs(num_texts=(4, 2), num_targets=(3, 1), text_dims=8):
    torch.manual_seed(0)
    kmax = max(num_texts)
    text_embeds = torch.randn(len(num_texts), kmax, text_dims)
    text_valid = torch.zeros(len(num_texts), kmax, dtype=torch.bool)
    for b, k in enumerate(num_texts):
        text_valid[b, :k] = True
        text_embeds[b, k:] = 0
    labels = [torch.randint(0, k, (n, )) for k, n in zip(num_texts, num_targets)]
    boxes = [torch.tensor([[0.5, 0.5, 0.2, 0.3]]).repeat(n, 1) for n in num_targets]
    return labels, boxes, text_embeds, text_valid


def test_dn_queries_without_noise_embed_the_gt_texts():
    labels, boxes, text_embeds, text_valid = _inputs()
    gen = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16, num_dn_queries=7,
                                      label_noise_ratio=0.0, box_noise_scale=0.0)
    out = gen(labels, boxes, text_embeds, text_valid, num_matching=5)
    meta = out['dn_meta']
    assert meta['num_dn_groups'] == 7 // 3 and meta['pad_size'] == 2 * 3
    assert out['content'].shape == (2, 6, 16) and out['anchors'].shape == (2, 6, 4)
    assert out['attn_mask'].shape == (11, 11)
    for b in range(2):
        pos, gt = meta['dn_positive_idx'][b], meta['dn_gt_idx'][b]
        assert len(pos) == len(gt) == 2 * len(labels[b])
        expected = gen.label_proj(text_embeds[b, labels[b][gt]])
        torch.testing.assert_close(out['content'][b, pos], expected)
        torch.testing.assert_close(out['anchors'][b, pos].sigmoid(), boxes[b][gt], atol=1e-4,
                                   rtol=0)
    # image 1 has one target: slots 0 and 3 (group stride = max targets = 3)
    assert meta['dn_positive_idx'][1].tolist() == [0, 3]


def test_dn_noise_stays_in_vocabulary_and_box_range():
    labels, boxes, text_embeds, text_valid = _inputs(num_texts=(4, 2), num_targets=(3, 2))
    gen = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16, num_dn_queries=300,
                                      label_noise_ratio=1.0, box_noise_scale=0.4)
    out = gen(labels, boxes, text_embeds, text_valid, num_matching=1)
    # with label noise 1, every label is redrawn within the image's own vocabulary
    b = 1
    pos = out['dn_meta']['dn_positive_idx'][b]
    allowed = gen.label_proj(text_embeds[b, :2])  # [2, C]
    dist = torch.cdist(out['content'][b, pos], allowed).min(-1).values
    assert torch.all(dist < 1e-5)
    # noisy boxes: centre moves <= 0.4 * half size, size changes <= 0.4 * size
    noisy = out['anchors'][0, out['dn_meta']['dn_positive_idx'][0]].sigmoid()
    ref = boxes[0][0]
    assert torch.all((noisy[:, :2] - ref[:2]).abs() <= 0.4 * ref[2:] / 2 + 1e-4)
    assert torch.all((noisy[:, 2:] - ref[2:]).abs() <= 0.4 * ref[2:] + 1e-4)
    assert (noisy - ref).abs().max() > 1e-3  # noise was applied


def test_dn_returns_none_without_targets():
    _, _, text_embeds, text_valid = _inputs()
    gen = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16)
    empty = [torch.zeros(0, dtype=torch.long)] * 2
    assert gen(empty, [torch.zeros(0, 4)] * 2, text_embeds, text_valid, 3) is None


@pytest.mark.parametrize('groups', [1, 4])
def test_dn_mask_rows_never_fully_blocked(groups):
    mask = build_dn_attn_mask(groups, 3, 4)
    assert not mask.all(-1).any()
