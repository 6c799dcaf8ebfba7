"""Box supervision gated per target (issue 9, item 4): ``box_valid`` beside ``mask_valid``.

Semantic-task targets (one mask per class, box = union of scattered regions) and the stuff of
panoptic samples get no box loss and no box matching cost (Mask DINO's ``loss_boxes_panoptic``
and matcher); ``box_supervision='all'`` supervises every box."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmquerymeld.models.losses import QueryMeldCriterion

SIZE = 32
H = SIZE // 4
LOGIT = 8.0
BOX_KEYS = ('loss_bbox', 'loss_iou')


def _meta(task: str, thing_flags=None) -> dict:
    meta = dict(batch_input_shape=(SIZE, SIZE), img_shape=(SIZE, SIZE), task=task,
                texts=['a', 'b', 'c'], img_path=f'{task}.png')
    if thing_flags is not None:
        meta['thing_flags'] = list(thing_flags)
    return meta


def _gt(boxes, labels, masks) -> InstanceData:
    return InstanceData(labels=torch.tensor(labels), bboxes=torch.tensor(boxes).float(),
                        masks=torch.stack(masks).bool(),
                        mask_valid=torch.ones(len(labels), dtype=torch.bool))


def _band(rows: slice) -> torch.Tensor:
    m = torch.zeros(SIZE, SIZE)
    m[rows] = 1
    return m


def _outputs(logits, boxes, masks) -> dict:
    return dict(pred_logits=torch.stack(logits)[None].requires_grad_(),
                pred_boxes=torch.tensor(boxes)[None].requires_grad_(),
                pred_masks=torch.stack(masks)[None].requires_grad_())


def _logits(label: int) -> torch.Tensor:
    out = torch.full((3, ), -LOGIT)
    out[label] = LOGIT
    return out


def _mask_logits(rows: slice) -> torch.Tensor:
    m = torch.full((H, H), -LOGIT)
    m[rows] = LOGIT
    return m


@pytest.fixture(scope='module')
def criterion() -> QueryMeldCriterion:
    return QueryMeldCriterion(num_points=256)


def _semantic_case():
    """Two semantic targets with scattered-region boxes; queries predict their masks and
    classes well but boxes far from the union boxes."""
    gt = _gt([[0., 0., 32., 8.], [0., 24., 32., 32.]], [0, 2],
             [_band(slice(0, 8)), _band(slice(24, 32))])
    out = _outputs([_logits(0), _logits(2), _logits(1)],
                   [[0.2, 0.2, 0.1, 0.1], [0.7, 0.6, 0.2, 0.1], [0.5, 0.5, 0.3, 0.3]],
                   [_mask_logits(slice(0, 2)), _mask_logits(slice(6, 8)),
                    _mask_logits(slice(3, 5))])
    return gt, out


def test_semantic_target_box_gets_no_loss_and_no_gradient(criterion):
    gt, out = _semantic_case()
    losses = criterion(out, [gt], [_meta('semantic')])
    assert all(losses[k].item() == 0.0 for k in BOX_KEYS)
    assert losses['loss_cls'].item() > 0 and losses['loss_mask'].item() > 0
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert out['pred_boxes'].grad is not None and not out['pred_boxes'].grad.any()
    assert out['pred_masks'].grad.abs().sum() > 0
    # control: supervising every box gives the same targets a box loss and a box gradient
    gt, out = _semantic_case()
    losses = QueryMeldCriterion(num_points=256, box_supervision='all')(
        out, [gt], [_meta('semantic')])
    assert all(losses[k].item() > 0 for k in BOX_KEYS)
    (losses['loss_bbox'] + losses['loss_iou']).backward()
    assert out['pred_boxes'].grad.abs().sum() > 0


def _panoptic_case(stuff_box):
    """gt 0: thing 'a' (top band, box given); gt 1: stuff 'b' (bottom band, box ``stuff_box``).
    Queries 1 and 2 are identical but for their boxes (left / right half): only a box cost can
    tell which one the stuff target gets."""
    gt = _gt([[0., 0., 32., 8.], stuff_box], [0, 1],
             [_band(slice(0, 8)), _band(slice(24, 32))])
    out = _outputs([_logits(0), _logits(1), _logits(1), _logits(2)],
                   [[0.5, 0.15, 0.9, 0.25], [0.25, 0.875, 0.5, 0.25],
                    [0.75, 0.875, 0.5, 0.25], [0.5, 0.5, 0.2, 0.2]],
                   [_mask_logits(slice(0, 2)), _mask_logits(slice(6, 8)),
                    _mask_logits(slice(6, 8)), _mask_logits(slice(3, 5))])
    return gt, out


@pytest.mark.parametrize('box_supervision', ['things', 'all'])
def test_stuff_box_changes_neither_matching_nor_losses(box_supervision):
    criterion = QueryMeldCriterion(num_points=256, box_supervision=box_supervision)
    meta = _meta('panoptic', thing_flags=[True, False, False])
    left, right = [0., 24., 16., 32.], [16., 24., 32., 32.]
    results = []
    for stuff_box in (left, right):
        gt, out = _panoptic_case(stuff_box)
        torch.manual_seed(0)
        q, g = criterion.match(out['pred_logits'][0], out['pred_boxes'][0],
                               out['pred_masks'][0], gt, meta)
        torch.manual_seed(0)
        losses = criterion(out, [gt], [meta])
        results.append((dict(zip(g.tolist(), q.tolist())), losses))
    (match_l, loss_l), (match_r, loss_r) = results
    if box_supervision == 'all':  # control: the stuff box decides between queries 1 and 2
        assert match_l == {0: 0, 1: 1} and match_r == {0: 0, 1: 2}
        return
    assert match_l == match_r and match_l[0] == 0
    assert set(loss_l) == set(loss_r)
    for key in loss_l:
        torch.testing.assert_close(loss_l[key], loss_r[key], rtol=0, atol=0, msg=key)
    # the thing's box is still supervised
    assert loss_l["loss_iou"].item() > 0 and loss_l["loss_bbox"].item() > 0


def test_box_valid_from_gt_instances_overrides_the_task_rule(criterion):
    gt, out = _semantic_case()
    gt.box_valid = torch.tensor([True, False])
    losses = criterion(out, [gt], [_meta('semantic')])
    assert losses['loss_bbox'].item() > 0
    losses['loss_bbox'].backward()
    grad = out['pred_boxes'].grad[0]
    q, g = criterion.match(out['pred_logits'][0], out['pred_boxes'][0], out['pred_masks'][0],
                           gt, _meta('semantic'))
    boxed = q[g == 0]
    assert grad[boxed].abs().sum() > 0 and grad[q[g == 1]].abs().sum() == 0


def test_denoising_of_box_invalid_targets_has_class_and_mask_but_no_box_loss(criterion):
    """Mask DINO denoises stuff too (noised box as the anchor); only the box loss is dropped."""
    gt, out = _semantic_case()
    dn = dict(pred_logits=out['pred_logits'][:, :2].detach().clone().requires_grad_(),
              pred_boxes=out['pred_boxes'][:, :2].detach().clone().requires_grad_(),
              pred_masks=out['pred_masks'][:, :2].detach().clone().requires_grad_())
    dn_meta = dict(dn_query_idx=[torch.tensor([0, 1])], dn_gt_idx=[torch.tensor([0, 1])])
    losses = criterion(dict(out, dn_outputs=dn, dn_meta=dn_meta), [gt], [_meta('semantic')])
    assert losses['dn.loss_bbox'].item() == 0 and losses['dn.loss_iou'].item() == 0
    assert losses['dn.loss_cls'].item() > 0 and losses['dn.loss_mask'].item() > 0
    losses['dn.loss_cls'].backward()
    assert dn['pred_boxes'].grad is None or not dn['pred_boxes'].grad.any()
    # the same targets as a thing-only (instance) sample: the dn box loss comes back
    losses = criterion(dict(out, dn_outputs=dn, dn_meta=dn_meta), [gt], [_meta('instance')])
    assert losses['dn.loss_bbox'].item() > 0


def test_bad_box_supervision_is_refused():
    with pytest.raises(ValueError, match='box_supervision'):
        QueryMeldCriterion(box_supervision='stuff')
