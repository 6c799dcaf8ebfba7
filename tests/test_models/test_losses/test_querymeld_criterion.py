"""Tests of QueryMeldCriterion: type-blind matching, loss gating by mask validity, all levels."""
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures.mask import BitmapMasks
from mmengine.model import BaseModel
from mmengine.structures import InstanceData

from mmquerymeld.models.losses import QueryMeldCriterion
from mmquerymeld.utils import QUERY_TYPES

SIZE = 32  # batch_input_shape is SIZE x SIZE; predicted masks are SIZE // 4
LOGIT = 8.0
LEARNABLE, CONDITIONAL = QUERY_TYPES['learnable'], QUERY_TYPES['conditional']


def meta(size: int = SIZE) -> dict:
    return dict(batch_input_shape=(size, size), img_shape=(size, size), img_path='case.png')


def two_object_gt(mask_valid=(True, True)) -> InstanceData:
    """gt 0: text 0, top-left quadrant; gt 1: text 2, bottom-right quadrant."""
    masks = torch.zeros((2, SIZE, SIZE), dtype=torch.uint8)
    masks[0, :SIZE // 2, :SIZE // 2] = 1
    masks[1, SIZE // 2:, SIZE // 2:] = 1
    for i, valid in enumerate(mask_valid):
        if not valid:
            masks[i] = 0
    return InstanceData(
        labels=torch.tensor([0, 2]),
        bboxes=torch.tensor([[0., 0., 16., 16.], [16., 16., 32., 32.]]),
        masks=BitmapMasks(masks.numpy(), SIZE, SIZE),
        mask_valid=torch.tensor(mask_valid))


def perfect_query(label: int, quadrant: int, num_texts: int = 3):
    """Logits, cxcywh box and 1/4-resolution mask logits that predict one quadrant object."""
    h = SIZE // 4
    logits = torch.full((num_texts, ), -LOGIT)
    logits[label] = LOGIT
    mask = torch.full((h, h), -LOGIT)
    if quadrant == 0:
        box = torch.tensor([0.25, 0.25, 0.5, 0.5])
        mask[:h // 2, :h // 2] = LOGIT
    else:
        box = torch.tensor([0.75, 0.75, 0.5, 0.5])
        mask[h // 2:, h // 2:] = LOGIT
    return logits, box, mask


def bad_query(num_texts: int = 3):
    h = SIZE // 4
    return (torch.full((num_texts, ), -LOGIT), torch.tensor([0.5, 0.5, 0.1, 0.1]),
            torch.full((h, h), -LOGIT))


def predictions(slots: dict, num_queries: int = 4, num_texts: int = 3):
    """Stack per-query predictions; ``slots`` maps query index -> (label, quadrant)."""
    logits, boxes, masks = [], [], []
    for q in range(num_queries):
        if q in slots:
            lg, bx, mk = perfect_query(*slots[q], num_texts=num_texts)
        else:
            lg, bx, mk = bad_query(num_texts)
        logits.append(lg)
        boxes.append(bx)
        masks.append(mk)
    return torch.stack(logits), torch.stack(boxes), torch.stack(masks)


def batch_outputs(slots: dict, **extra) -> dict:
    logits, boxes, masks = predictions(slots)
    out = dict(pred_logits=logits[None].clone().requires_grad_(),
               pred_boxes=boxes[None].clone().requires_grad_(),
               pred_masks=masks[None].clone().requires_grad_())
    out.update(extra)
    return out


@pytest.fixture(scope='module')
def criterion() -> QueryMeldCriterion:
    return QueryMeldCriterion(num_points=256)


def test_registered_and_defaults():
    crit = MODELS.build(dict(type='QueryMeldCriterion'))
    assert isinstance(crit, QueryMeldCriterion)
    assert crit.num_points == 12544 and crit.num_match_points == 12544
    assert crit.oversample_ratio == 3.0 and crit.importance_sample_ratio == 0.75
    weights = [c.weight for c in crit.assigner.match_costs]
    assert weights == [4.0, 5.0, 2.0, 5.0, 5.0]
    assert (crit.loss_cls.loss_weight, crit.loss_bbox.loss_weight, crit.loss_iou.loss_weight,
            crit.loss_mask.loss_weight, crit.loss_dice.loss_weight) == (4.0, 5.0, 2.0, 5.0, 5.0)


@pytest.mark.parametrize('slots,expected_types', [
    ({0: (0, 0), 3: (2, 1)}, (LEARNABLE, CONDITIONAL)),
    ({2: (0, 0), 1: (2, 1)}, (CONDITIONAL, LEARNABLE)),
    ({0: (0, 0), 1: (2, 1)}, (LEARNABLE, LEARNABLE)),
    ({3: (0, 0), 2: (2, 1)}, (CONDITIONAL, CONDITIONAL)),
])
def test_match_follows_prediction_quality_blind_to_type(criterion, slots, expected_types):
    """Queries 0, 1 are learnable and 2, 3 conditional; each gt goes to its perfect query."""
    query_types = torch.tensor([LEARNABLE, LEARNABLE, CONDITIONAL, CONDITIONAL])
    logits, boxes, masks = predictions(slots)
    query_idx, gt_idx = criterion.match(logits, boxes, masks, two_object_gt(), meta())
    got = {int(g): int(q) for q, g in zip(query_idx, gt_idx)}
    want = {label_quadrant[1]: q for q, label_quadrant in slots.items()}
    assert got == want
    assert tuple(int(query_types[got[g]]) for g in (0, 1)) == expected_types

    out = batch_outputs(slots, query_types=query_types)
    losses = criterion(out, [two_object_gt()], [meta()])
    n_cond = sum(t == CONDITIONAL for t in expected_types)
    assert losses['matched_conditional_frac'].item() == pytest.approx(n_cond / 2)
    # logged by mmengine, never optimised: the parsed total is the sum of the loss terms only
    total, log_vars = BaseModel.parse_losses(None, losses)
    assert 'matched_conditional_frac' in log_vars
    assert total.item() == pytest.approx(
        sum(v.item() for k, v in losses.items() if k != 'matched_conditional_frac'))


def test_perfect_predictions_have_near_zero_box_and_mask_losses(criterion):
    losses = criterion(batch_outputs({0: (0, 0), 3: (2, 1)}), [two_object_gt()], [meta()])
    assert losses['loss_bbox'].item() < 1e-5
    assert losses['loss_iou'].item() < 1e-5
    # mask terms stay > 0: importance sampling picks the boundary, where the 1/4-resolution
    # prediction is blurred by bilinear sampling
    assert losses['loss_mask'].item() < 1.0
    assert losses['loss_dice'].item() < 1.0
    bad = criterion(batch_outputs({}), [two_object_gt()], [meta()])
    for key in ('loss_cls', 'loss_bbox', 'loss_iou', 'loss_mask', 'loss_dice'):
        assert bad[key].item() > losses[key].item() + 0.1, key


def test_box_only_gives_zero_mask_loss_and_nonzero_box_loss(criterion):
    out = batch_outputs({1: (0, 0), 2: (2, 1)})
    with torch.no_grad():
        out['pred_boxes'][0, 1] += 0.05  # imperfect boxes
    gt = two_object_gt(mask_valid=(False, False))
    losses = criterion(out, [gt], [meta()])
    assert losses['loss_mask'].item() == 0.0
    assert losses['loss_dice'].item() == 0.0
    assert losses['loss_bbox'].item() > 0 and losses['loss_iou'].item() > 0
    assert losses['loss_cls'].item() > 0
    # still in the graph (no unused-parameter error under DDP) and backward works
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert out['pred_masks'].grad is not None
    assert torch.count_nonzero(out['pred_masks'].grad) == 0
    assert torch.count_nonzero(out['pred_boxes'].grad) > 0


def test_box_only_instance_is_dropped_from_mask_loss(criterion):
    """Changing the mask predicted for the box-only gt leaves the mask losses unchanged."""
    gt = two_object_gt(mask_valid=(True, False))
    out_a = batch_outputs({0: (0, 0), 3: (2, 1)})
    out_a['pred_masks'].data[0, 0] += 3.0  # imperfect mask for the valid gt
    out_b = batch_outputs({0: (0, 0), 3: (2, 1)})
    out_b['pred_masks'].data[0, 0] += 3.0
    out_b['pred_masks'].data[0, 3] = LOGIT  # box-only gt: a full mask, far from its empty mask
    torch.manual_seed(0)
    la = criterion(out_a, [gt], [meta()])
    torch.manual_seed(0)
    lb = criterion(out_b, [gt], [meta()])
    assert la['loss_mask'].item() > 0
    assert la['loss_mask'].item() == pytest.approx(lb['loss_mask'].item())
    assert la['loss_dice'].item() == pytest.approx(lb['loss_dice'].item())
    # and the matching of the box-only gt is decided by class + box costs (ungated mask costs
    # would give it an empty-mask bad query)
    q, g = criterion.match(out_b['pred_logits'][0].detach(), out_b['pred_boxes'][0].detach(),
                           out_b['pred_masks'][0].detach(), gt, meta())
    assert dict(zip(g.tolist(), q.tolist())) == {0: 0, 1: 3}


def test_box_loss_normalised_by_number_of_gt(criterion):
    out = batch_outputs({0: (0, 0), 3: (2, 1)})
    with torch.no_grad():
        out['pred_boxes'][0, 0, 0] += 0.1  # cx of the first matched query off by 0.1
    losses = criterion(out, [two_object_gt()], [meta()])
    # L1 weight 5: 5 * 0.1 / 2 gt
    assert losses['loss_bbox'].item() == pytest.approx(0.25, abs=1e-5)


def test_image_without_gt_gets_only_the_class_loss(criterion):
    out = batch_outputs({0: (0, 0)})
    empty = InstanceData(labels=torch.zeros(0, dtype=torch.long), bboxes=torch.zeros(0, 4),
                         masks=BitmapMasks(torch.zeros(0, SIZE, SIZE).numpy(), SIZE, SIZE),
                         mask_valid=torch.zeros(0, dtype=torch.bool))
    losses = criterion(out, [empty], [meta()])
    assert losses['loss_cls'].item() > 0
    for key in ('loss_bbox', 'loss_iou', 'loss_mask', 'loss_dice'):
        assert losses[key].item() == 0.0
    # all negatives, normalised by max(num_gt, 1) = 1: mmdet's focal loss with zero targets
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    logits = out['pred_logits'].detach().reshape(-1, 3)
    expected = 4.0 * py_sigmoid_focal_loss(logits, torch.zeros_like(logits), reduction='sum')
    assert losses['loss_cls'].item() == pytest.approx(expected.item(), rel=1e-5)


def test_padded_vocabulary_entries_get_no_class_loss(criterion):
    out3 = batch_outputs({0: (0, 0), 3: (2, 1)})
    logits4 = torch.cat([out3['pred_logits'].detach(), torch.full((1, 4, 1), 10.0)], -1)
    out4 = dict(out3, pred_logits=logits4, text_valid=torch.tensor([[True, True, True, False]]))
    torch.manual_seed(0)
    l3 = criterion(out3, [two_object_gt()], [meta()])
    torch.manual_seed(0)
    l4 = criterion(out4, [two_object_gt()], [meta()])
    # rel 1e-5: the two layouts ([1, 4, 3] vs [1, 4, 4] with a masked column) may be summed in a
    # different order (float32); an unmasked column at logit 10 would add ~4 x 7.5 per query
    assert l4['loss_cls'].item() == pytest.approx(l3['loss_cls'].item(), rel=1e-5)
    out4_unmasked = dict(out4, text_valid=torch.ones(1, 4, dtype=torch.bool))
    assert criterion(out4_unmasked, [two_object_gt()], [meta()])['loss_cls'] > l4['loss_cls'] + 1


def test_all_levels_and_denoising_keys_and_backward(criterion):
    slots = {0: (0, 0), 3: (2, 1)}
    out = batch_outputs(slots)
    out['aux_outputs'] = [batch_outputs(slots), batch_outputs({})]
    enc = batch_outputs(slots)
    out['enc_outputs'] = enc
    # 6 dn queries: 2 groups x (gt0, gt1, negative); dn queries 0 and 3 reconstruct gt 0
    dn_logits, dn_boxes, dn_masks = predictions({0: (0, 0), 1: (2, 1), 3: (0, 0), 4: (2, 1)},
                                                num_queries=6)
    dn = dict(pred_logits=dn_logits[None].requires_grad_(),
              pred_boxes=dn_boxes[None].requires_grad_(),
              pred_masks=dn_masks[None].requires_grad_())
    dn['aux_outputs'] = [dict(pred_logits=dn['pred_logits'] * 1, pred_boxes=dn['pred_boxes'] * 1,
                              pred_masks=dn['pred_masks'] * 1)]
    out['dn_outputs'] = dn
    dn_meta = dict(num_dn_groups=2, pad_size=6, dn_query_idx=[torch.tensor([0, 1, 3, 4])],
                   dn_gt_idx=[torch.tensor([0, 1, 0, 1])])
    out['dn_meta'] = dn_meta
    losses = criterion(out, [two_object_gt()], [meta()])
    terms = ('loss_cls', 'loss_bbox', 'loss_iou', 'loss_mask', 'loss_dice')
    expected = {p + t for p in ('', 'd0.', 'd1.', 'enc.', 'dn.', 'dn.d0.') for t in terms}
    assert set(losses) == expected
    assert losses['dn.loss_bbox'].item() < 1e-5 and losses['dn.loss_dice'].item() < 1.0
    assert losses['d1.loss_bbox'].item() > 0.1  # the all-bad level
    sum(losses.values()).backward()
    for t in (out['pred_logits'], enc['pred_boxes'], dn['pred_masks']):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    # the dn targets come from dn_meta, not from matching: a wrong pairing costs
    swapped = dict(dn_meta, dn_gt_idx=[torch.tensor([1, 0, 1, 0])])
    worse = criterion(dict(out, dn_meta=swapped), [two_object_gt()], [meta()])
    assert worse['dn.loss_bbox'].item() > 0.5


def test_batch_with_masks_at_img_shape_and_mixed_tasks(criterion):
    """Two images: gt masks stored at an unpadded img_shape (padded by the criterion) and a
    box-only image; the mask terms are normalised by the number of masks only."""
    small = torch.zeros((1, 24, 20), dtype=torch.bool)
    small[0, :16, :16] = True
    gt_a = InstanceData(labels=torch.tensor([0]), bboxes=torch.tensor([[0., 0., 16., 16.]]),
                        masks=small, mask_valid=torch.tensor([True]))
    gt_b = two_object_gt(mask_valid=(False, False))
    la, lb = batch_outputs({0: (0, 0)}), batch_outputs({1: (0, 0), 2: (2, 1)})
    out = {k: torch.cat([la[k], lb[k]]).detach() for k in ('pred_logits', 'pred_boxes',
                                                            'pred_masks')}
    losses = criterion(out, [gt_a, gt_b], [meta(), meta()])
    assert losses['loss_dice'].item() < 1.0 and losses['loss_bbox'].item() < 1e-5
    out['pred_masks'][0] = -out['pred_masks'][0]  # the one mask now wrong
    worse = criterion(out, [gt_a, gt_b], [meta(), meta()])
    assert worse['loss_dice'].item() > 4.0  # ~ weight 5 x dice 1 / 1 mask (not / 3 gt)


def test_bad_input_errors_name_the_field(criterion):
    out = batch_outputs({0: (0, 0)})
    gt = two_object_gt()
    gt.labels = torch.tensor([0, 7])
    with pytest.raises(ValueError, match='labels'):
        criterion(out, [gt], [meta()])
    big = InstanceData(labels=torch.tensor([0]), bboxes=torch.tensor([[0., 0., 4., 4.]]),
                       masks=torch.zeros((1, 40, 40), dtype=torch.bool),
                       mask_valid=torch.tensor([True]))
    with pytest.raises(ValueError, match='case.png.*masks'):
        criterion(out, [big], [meta()])
    with pytest.raises(KeyError, match='bboxes'):
        criterion(out, [InstanceData(labels=torch.tensor([0]))], [meta()])
    bad_dn = dict(out, dn_outputs=dict(out), dn_meta=dict(dn_query_idx=[torch.tensor([0])],
                                                          dn_gt_idx=[torch.tensor([5])]))
    with pytest.raises(ValueError, match='dn_gt_idx'):
        criterion(bad_dn, [two_object_gt()], [meta()])


def _box_only_gt(cxs) -> InstanceData:
    """Box-only gt (no mask cost), label 0, 0.1 x 0.1 boxes centred at ``(cx, 0.5)``."""
    boxes = torch.tensor([[cx - 0.05, 0.45, cx + 0.05, 0.55] for cx in cxs]) * SIZE
    return InstanceData(labels=torch.zeros(len(cxs), dtype=torch.long), bboxes=boxes,
                        masks=torch.zeros((len(cxs), SIZE, SIZE), dtype=torch.bool),
                        mask_valid=torch.zeros(len(cxs), dtype=torch.bool))


def test_optimal_match_mixes_query_types_where_greedy_or_one_type_would_not(criterion):
    """Queries [L0, L1, C0, C1] (learnable, learnable, conditional, conditional); gt g0 at
    cx 0.2, g1 at cx 0.5 (box-only: class logits are equal for every query, so only the box costs
    5 x L1 + 2 x (-GIoU) decide). Costs, worked out by hand:

    ======  =========================  =========================
            g0 (cx 0.2)                g1 (cx 0.5)
    ======  =========================  =========================
    L0 0.3  5 x 0.10 - 2 x 0    = 0.50  5 x 0.20 + 2 x 1/3  = 1.67
    C1 0.05 5 x 0.15 + 2 x 0.2  = 1.15  5 x 0.45 + 2 x 7/11 = 3.52
    L1, C0  far corners: > 6           > 6
    ======  =========================  =========================

    The Hungarian optimum over all queries is {g0: C1, g1: L0} (2.82). A greedy assigner takes
    L0 for g0 first (0.50) and pays >= 3.52 for g1 (>= 4.02); learnable-only or conditional-only
    matching must use a far query (> 6). Only a type-blind optimal matching gives this answer.
    """
    L0, L1, C0, C1 = 0, 1, 2, 3
    boxes = torch.tensor([[0.30, 0.5, 0.1, 0.1], [0.9, 0.9, 0.05, 0.05],
                          [0.9, 0.1, 0.05, 0.05], [0.05, 0.5, 0.1, 0.1]])
    logits = torch.zeros(4, 3)
    masks = torch.zeros(4, SIZE // 4, SIZE // 4)
    gt = _box_only_gt([0.2, 0.5])
    # each gt alone goes to L0, its cheapest query ...
    for g in (0, 1):
        q_idx, g_idx = criterion.match(logits, boxes, masks, gt[[g]], meta())
        assert q_idx.tolist() == [L0] and g_idx.tolist() == [0]
    # ... but together the optimum gives g0 to a conditional query and g1 to a learnable one
    q_idx, g_idx = criterion.match(logits, boxes, masks, gt, meta())
    assert dict(zip(g_idx.tolist(), q_idx.tolist())) == {0: C1, 1: L0}

    # the loss uses that assignment: L1 = 5 x (0.15 + 0.20) / 2 gt; half the matches conditional
    out = dict(pred_logits=logits[None], pred_boxes=boxes[None], pred_masks=masks[None],
               query_types=torch.tensor([LEARNABLE, LEARNABLE, CONDITIONAL, CONDITIONAL]))
    losses = criterion(out, [gt], [meta()])
    assert losses['loss_bbox'].item() == pytest.approx(0.875, abs=1e-5)
    assert losses['matched_conditional_frac'].item() == pytest.approx(0.5)
