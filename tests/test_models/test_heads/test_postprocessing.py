"""Tests of the per-task post-processing functions (one image each)."""
import pytest
import torch

from mmquerymeld.models.heads.postprocessing import (
    postprocess_by_task, postprocess_detection, postprocess_foreground, postprocess_instance,
    postprocess_panoptic, postprocess_referring, postprocess_semantic)
from mmquerymeld.utils import INSTANCE_OFFSET, QUERY_TYPES

L, C = QUERY_TYPES['learnable'], QUERY_TYPES['conditional']
ON = 8.0


def logit(p: float) -> float:
    return float(torch.logit(torch.tensor(p)))


def cls_logits(rows):
    """rows: per query a dict {text: probability}; other texts get probability 0.01."""
    num_k = 1 + max(k for row in rows for k in row)
    out = torch.full((len(rows), num_k), logit(0.01))
    for q, row in enumerate(rows):
        for k, p in row.items():
            out[q, k] = logit(p)
    return out


def masks(regions, size=8):
    """regions: per query a list of (row slice, col slice) set to +ON, else -ON."""
    out = torch.full((len(regions), size, size), -ON)
    for q, region in enumerate(regions):
        for rs, cs in region:
            out[q, rs, cs] = ON
    return out


ALL = slice(None)
LEFT, RIGHT = slice(0, 4), slice(4, 8)


def test_semantic_einsum_of_class_and_mask_probabilities():
    cls = cls_logits([{0: 0.9}, {1: 0.9}, {0: 0.1}])
    mk = masks([[(ALL, LEFT)], [(ALL, RIGHT)], [(ALL, RIGHT)]])
    seg = postprocess_semantic(cls, mk).sem_seg
    assert seg.shape == (1, 8, 8) and seg.dtype == torch.long
    assert (seg[0, :, :4] == 0).all() and (seg[0, :, 4:] == 1).all()
    # a confident third query for text 0 on the right flips it
    cls[2, 0] = logit(0.99)
    cls[1, 1] = logit(0.5)
    assert (postprocess_semantic(cls, mk).sem_seg[0, :, 4:] == 0).all()


def test_instance_topk_rescored_by_mask_confidence_with_query_types():
    cls = cls_logits([{0: 0.9, 1: 0.3}, {1: 0.8}, {0: 0.6}])
    mk = masks([[(ALL, LEFT)], [(ALL, RIGHT)], [(slice(0, 2), ALL)]])
    mk[2] = mk[2].clamp(max=0.5)  # a weak mask: low mask confidence lowers its score
    boxes = torch.tensor([[0., 0., 4., 8.], [4., 0., 8., 8.], [0., 0., 8., 2.]])
    types = torch.tensor([L, C, C])
    res = postprocess_instance(cls, mk, boxes, types, max_per_image=4)
    assert len(res) == 4
    # top-4 of (query, text) by class score: (0,0) 0.9, (1,1) 0.8, (2,0) 0.6, (0,1) 0.3
    assert res.labels.tolist() == [0, 1, 0, 1]
    assert res.query_types.tolist() == [L, C, C, L]
    assert torch.equal(res.bboxes, boxes[[0, 1, 2, 0]])
    assert res.masks.dtype == torch.bool and res.masks.shape == (4, 8, 8)
    assert torch.equal(res.masks[1], mk[1] > 0)
    assert res.scores[0].item() == pytest.approx(0.9 * torch.sigmoid(torch.tensor(ON)).item(),
                                                 rel=1e-4)
    assert res.scores[2].item() == pytest.approx(0.6 * torch.sigmoid(torch.tensor(0.5)).item(),
                                                 rel=1e-4)
    # without boxes they come from the masks
    res = postprocess_instance(cls, mk, None, types, max_per_image=2)
    assert res.bboxes.tolist() == [[0., 0., 4., 8.], [4., 0., 8., 8.]]


def panoptic_case():
    rows = [
        {0: 0.99},  # q0 thing "person", left columns 0-1
        {0: 0.98},  # q1 thing "person", columns 2-3
        {1: 0.97},  # q2 stuff "sky", columns 4-5 (16 px)
        {1: 0.96},  # q3 stuff "sky", columns 6-7 of rows 0-3 (8 px) -> merged with q2
        {2: 0.20},  # q4 below object_mask_thr (0.25)
        {2: 0.90},  # q5 overlaps the things entirely: wins nothing
        {2: 0.85},  # q6 wins 8 of its 12 px (0.67 < 0.8): dropped
    ]
    regions = [
        [(ALL, slice(0, 2))],
        [(ALL, slice(2, 4))],
        [(ALL, slice(4, 6))],
        [(slice(0, 4), slice(6, 8))],
        [(slice(4, 8), slice(6, 8))],
        [(ALL, slice(0, 4))],
        [(slice(4, 8), slice(6, 8)), (slice(6, 8), slice(4, 6))],
    ]
    types = torch.tensor([L, C, L, C, C, C, C])
    return cls_logits(rows), masks(regions), types


def test_panoptic_things_separate_stuff_merged_overlaps_dropped():
    cls, mk, types = panoptic_case()
    thing_flags = [True, False, False]
    pan, segs = postprocess_panoptic(cls, mk, types, thing_flags)
    seg = pan.sem_seg[0]
    assert pan.sem_seg.shape == (1, 8, 8) and seg.dtype == torch.long
    assert (seg[:, 0:2] == 0 + 1 * INSTANCE_OFFSET).all()
    assert (seg[:, 2:4] == 0 + 2 * INSTANCE_OFFSET).all()
    assert (seg[:, 4:6] == 1).all() and (seg[0:4, 6:8] == 1).all()  # one merged sky segment
    assert (seg[4:8, 6:8] == 3).all()  # void = K
    assert len(segs) == 3
    assert segs.labels.tolist() == [0, 0, 1]
    assert segs.segment_ids.tolist() == [1000, 2000, 1]
    assert segs.is_thing.tolist() == [True, True, False]
    assert segs.query_types.tolist() == [L, C, L]  # the merged stuff: type of most pixels
    assert segs.masks[2].sum() == 24 and segs.masks.dtype == torch.bool
    assert segs.scores[2].item() == pytest.approx(0.97, rel=1e-4)
    assert segs.bboxes[2].tolist() == [4., 0., 8., 8.]
    # a looser overlap threshold keeps q6 (grass, stuff)
    pan, segs = postprocess_panoptic(cls, mk, types, thing_flags, iou_thr=0.5)
    assert (pan.sem_seg[0, 4:8, 6:8] == 2).all() and segs.labels.tolist() == [0, 0, 1, 2]
    # the same queries with "sky" a thing: two instances instead of one merged segment
    pan, segs = postprocess_panoptic(cls, mk, types, [True, True, False])
    assert sorted(pan.sem_seg.unique().tolist()) == [3, 1000, 2000, 3001, 4001]


def test_panoptic_default_threshold_suits_sigmoid_scores():
    # focal-loss (sigmoid) scores of good segments are often well below 0.8: the default keeps a
    # 0.5-confident stuff query (Mask DINO's object_mask_threshold 0.25)
    cls = cls_logits([{0: 0.5}])
    mk = masks([[(ALL, ALL)]])
    pan, segs = postprocess_panoptic(cls, mk, None, [False])
    assert (pan.sem_seg == 0).all() and segs.labels.tolist() == [0]


def test_panoptic_nothing_kept_is_all_void_and_bad_flags_raise():
    cls, mk, types = panoptic_case()
    pan, segs = postprocess_panoptic(cls, mk, types, [True, False, False], object_mask_thr=0.999)
    assert (pan.sem_seg == 3).all() and len(segs) == 0 and segs.masks.shape == (0, 8, 8)
    with pytest.raises(ValueError, match='thing_flags'):
        postprocess_panoptic(cls, mk, types, [True, False])


def test_referring_best_query_per_expression_in_text_order():
    cls = cls_logits([{0: 0.2, 1: 0.95}, {0: 0.9, 1: 0.1}, {0: 0.5}])
    mk = masks([[(ALL, LEFT)], [(ALL, RIGHT)], [(LEFT, ALL)]])
    boxes = torch.tensor([[0., 0., 4., 8.], [4., 0., 8., 8.], [0., 0., 8., 4.]])
    res = postprocess_referring(cls, mk, boxes, torch.tensor([C, L, C]))
    assert len(res) == 2 and res.labels.tolist() == [0, 1]
    assert torch.equal(res.masks[0], mk[1] > 0) and torch.equal(res.masks[1], mk[0] > 0)
    assert res.query_types.tolist() == [L, C]
    assert torch.equal(res.bboxes, boxes[[1, 0]])
    assert res.scores.tolist() == pytest.approx([0.9, 0.95], rel=1e-4)


def test_foreground_map_of_best_query():
    cls = cls_logits([{0: 0.3}, {0: 0.9}])
    mk = masks([[(ALL, ALL)], [(LEFT, LEFT)]])
    mk[1, 0, 0] = -0.5
    res = postprocess_foreground(cls, mk)
    assert res.sem_seg.shape == (1, 8, 8) and res.prob.shape == (1, 8, 8)
    assert res.sem_seg.dtype == torch.long and set(res.sem_seg.unique().tolist()) == {0, 1}
    assert res.sem_seg.sum() == 15
    assert res.prob[0, 0, 0].item() == pytest.approx(torch.sigmoid(torch.tensor(-0.5)).item())
    assert 0.0 <= res.prob.min() and res.prob.max() <= 1.0


def test_detection_topk_boxes_and_optional_masks():
    cls = cls_logits([{0: 0.4}, {1: 0.9}, {0: 0.7}])
    boxes = torch.tensor([[0., 0., 1., 1.], [1., 1., 2., 2.], [2., 2., 3., 3.]])
    types = torch.tensor([L, C, L])
    res = postprocess_detection(cls, boxes, types, max_per_image=2)
    assert res.labels.tolist() == [1, 0] and res.query_types.tolist() == [C, L]
    assert torch.equal(res.bboxes, boxes[[1, 2]])
    assert res.scores.tolist() == pytest.approx([0.9, 0.7], rel=1e-4)
    assert 'masks' not in res
    mk = masks([[(ALL, LEFT)], [(ALL, RIGHT)], [(LEFT, ALL)]])
    res = postprocess_detection(cls, boxes, types, mask_logits=mk, max_per_image=2)
    assert torch.equal(res.masks, mk[[1, 2]] > 0)


def test_dispatch_by_task_gives_data_sample_fields():
    cls, mk, types = panoptic_case()
    boxes = torch.zeros(len(cls), 4)
    expected = dict(semantic={'pred_sem_seg'}, instance={'pred_instances'},
                    panoptic={'pred_panoptic_seg', 'pred_instances'},
                    referring={'pred_instances'}, foreground={'pred_sem_seg'},
                    detection={'pred_instances'})
    for task, keys in expected.items():
        out = postprocess_by_task(task, cls, mk, boxes, types, thing_flags=[True, False, False])
        assert set(out) == keys, task
    out = postprocess_by_task('instance', cls, mk, boxes, types, max_per_image=3)
    assert len(out['pred_instances']) == 3
    with pytest.raises(ValueError, match='thing_flags'):
        postprocess_by_task('panoptic', cls, mk, boxes, types)
    with pytest.raises(ValueError, match='task'):
        postprocess_by_task('depth', cls, mk, boxes, types)
    with pytest.raises(ValueError, match='mask_logits'):
        postprocess_semantic(cls, mk[:3])
