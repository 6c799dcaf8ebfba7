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
    content = out['content'][b, pos]  # [n, C]
    allowed = gen.label_proj(text_embeds[b, :2])  # [2, C]
    # exact pairwise differences, not cdist's matrix-product formula (whose cancellation error,
    # ~3e-4 for identical rows, depends on the CPU); the nearest allowed text is unambiguous ...
    dist = torch.cdist(content, allowed, compute_mode='donot_use_mm_for_euclid_dist')
    nearest = dist.argmin(-1)
    assert float(torch.cdist(allowed, allowed).max()) > 0.1
    # ... and each query is that text's projection, up to float32 rounding of a Linear run on
    # batches of different sizes (BLAS may sum in another order): assert_close's float32 defaults
    torch.testing.assert_close(content, allowed[nearest])
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


def _crowded(num_targets=(500, 3), num_texts=(6, 4), text_dims=8):
    torch.manual_seed(0)
    labels, boxes, text_embeds, text_valid = _inputs(num_texts, num_targets, text_dims)
    boxes = [torch.rand(n, 4) * 0.5 + 0.25 for n in num_targets]  # distinct boxes
    return labels, boxes, text_embeds, text_valid


@pytest.mark.parametrize('cap,budget,expected_pad', [(None, 100, 100), (50, 100, 100),
                                                      (40, 100, 80), (150, 100, 150)])
def test_dn_cap_bounds_queries_of_a_500_object_image(cap, budget, expected_pad):
    """500 objects: a random subset of at most ``max_dn_targets`` is denoised (None: the query
    budget), so the dn part is ``max(budget, cap)`` queries at most, not 500."""
    labels, boxes, text_embeds, text_valid = _crowded()
    gen = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16, num_dn_queries=budget,
                                      label_noise_ratio=0.0, box_noise_scale=0.0,
                                      max_dn_targets=cap)
    out = gen(labels, boxes, text_embeds, text_valid, num_matching=5)
    meta = out['dn_meta']
    limit = cap if cap is not None else budget
    assert meta['pad_size'] == expected_pad <= max(budget, limit)
    assert out['content'].shape[1] == out['anchors'].shape[1] == expected_pad
    assert out['attn_mask'].shape == (expected_pad + 5, expected_pad + 5)
    groups = meta['num_dn_groups']
    assert groups == max(1, budget // limit)
    # image 0: `limit` distinct targets per group, indices into the original 500
    gt0, pos0 = meta['dn_gt_idx'][0], meta['dn_positive_idx'][0]
    assert len(gt0) == groups * limit and len(gt0.unique()) == limit
    assert int(gt0.max()) < 500 and int(gt0.min()) >= 0
    # the queries reconstruct exactly those targets (no noise: their boxes and texts)
    torch.testing.assert_close(out['anchors'][0, pos0].sigmoid(), boxes[0][gt0], atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(out['content'][0, pos0], gen.label_proj(text_embeds[0, labels[0][gt0]]))
    # image 1 (3 targets) keeps all of them in every group
    assert sorted(meta['dn_gt_idx'][1].tolist()) == sorted([0, 1, 2] * groups)


def test_dn_cap_draws_a_new_subset_each_step_and_leaves_small_images_alone():
    labels, boxes, text_embeds, text_valid = _crowded()
    gen = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16, num_dn_queries=100)
    first = gen(labels, boxes, text_embeds, text_valid, 5)['dn_meta']['dn_gt_idx'][0]
    second = gen(labels, boxes, text_embeds, text_valid, 5)['dn_meta']['dn_gt_idx'][0]
    assert not torch.equal(first, second)
    # below the cap the generator draws nothing extra: same output as without a cap
    small_l, small_b = labels[1:], boxes[1:]
    capped = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16, num_dn_queries=100,
                                         max_dn_targets=3)
    capped.load_state_dict(gen.state_dict())
    torch.manual_seed(7)
    a = gen(small_l, small_b, text_embeds[1:], text_valid[1:], 5)
    torch.manual_seed(7)
    b = capped(small_l, small_b, text_embeds[1:], text_valid[1:], 5)
    torch.testing.assert_close(a['content'], b['content'], rtol=0, atol=0)
    torch.testing.assert_close(a['anchors'], b['anchors'], rtol=0, atol=0)
    with pytest.raises(ValueError, match='max_dn_targets'):
        OpenVocabDenoisingGenerator(text_dims=8, max_dn_targets=0)
