"""Through the tiny model: ground truth prepared once per batch and shared by denoising, matching
and the losses (issue 9, item 8); a batch mixing box-only and masked samples from the real
pipeline trains with the mask terms gated (item 2)."""
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes, bbox_xyxy_to_cxcywh
from mmdet.structures.mask import BitmapMasks
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper

from mmquerymeld.datasets.transforms import PackQueryMeldInputs, ToUnifiedTargets
from mmquerymeld.datasets.transforms.box_only_masks import BoxOnlyMasks
from mmquerymeld.models.losses import PointSampledHungarianMatcher, QueryMeldCriterion
from mmquerymeld.models.task_modules import gt_targets

TEXTS = ['red square', 'blue circle', 'sky', 'grass']


def _scene(h: int, w: int):
    """A BGR image with a red square and a blue disc, and their masks ``[2, h, w]`` uint8."""
    yy, xx = np.mgrid[:h, :w]
    square = (yy >= 10) & (yy < 28) & (xx >= 6) & (xx < 24)
    disc = (yy - 36) ** 2 + (xx - 40) ** 2 <= 100
    img = np.full((h, w, 3), 120, np.uint8)
    img[square] = (0, 0, 230)
    img[disc] = (230, 40, 0)
    return img, np.stack([square, disc]).astype(np.uint8)


def test_targets_prepared_once_and_shared_with_one_clamp(tiny_model, make_batch, monkeypatch,
                                                         single_thread):
    model = tiny_model()
    model.train()
    batch = make_batch(tasks=('instance', 'panoptic'))
    # a box reaching 40 px left of the 64 px frame: its cxcywh centre is outside too
    batch['data_samples'][0].gt_instances.bboxes[0] = torch.tensor([-40., 10., 20., 40.])
    data = model.data_preprocessor(batch, True)
    head = model.head

    prepared, dn_boxes, matched, supervised = [], [], [], []
    real_prepare = gt_targets.prepare_gt_targets

    def prepare_spy(*args, **kwargs):
        prepared.append(args[0])
        return real_prepare(*args, **kwargs)

    real_dn = head.dn_generator.forward

    def dn_spy(gt_labels, gt_boxes, *args, **kwargs):
        dn_boxes.append(list(gt_boxes))
        return real_dn(gt_labels, gt_boxes, *args, **kwargs)

    real_match = PointSampledHungarianMatcher.__call__

    def match_spy(self, logits, boxes, masks, target, img_meta):
        matched.append(target)
        return real_match(self, logits, boxes, masks, target, img_meta)

    real_level = QueryMeldCriterion._level_losses

    def level_spy(self, level, targets, *args, **kwargs):
        supervised.append(list(targets))
        return real_level(self, level, targets, *args, **kwargs)

    monkeypatch.setattr(gt_targets, 'prepare_gt_targets', prepare_spy)
    monkeypatch.setattr(head.dn_generator, 'forward', dn_spy)
    monkeypatch.setattr(PointSampledHungarianMatcher, '__call__', match_spy)
    monkeypatch.setattr(QueryMeldCriterion, '_level_losses', level_spy)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert all(torch.isfinite(v) for k, v in losses.items() if 'loss' in k)

    # one preparation per image for the whole step ...
    assert len(prepared) == 2
    # ... whose targets every consumer holds: the same objects, not re-derived copies
    targets = supervised[0]
    assert len(dn_boxes) == 1 and len(supervised) > 2 and len(matched) > 2
    assert all(all(t is s for t, s in zip(level, targets)) for level in supervised)
    assert all(any(t is s for s in targets) for t in matched)
    assert all(b is t.norm_bboxes for b, t in zip(dn_boxes[0], targets))
    # the clamp happens once: denoising and matching see the visible part of the box
    expected = bbox_xyxy_to_cxcywh(torch.tensor([[0., 10., 20., 40.]]))[0] / 64
    torch.testing.assert_close(dn_boxes[0][0][0], expected)
    image0 = [t for t in matched if t is targets[0]][0]
    torch.testing.assert_close(image0.norm_bboxes[0], expected)
    assert image0.bboxes[0].tolist() == [0., 10., 20., 40.]


def _masked_sample(size: int = 64) -> dict:
    img, things = _scene(size, size)
    boxes = []
    for m in things:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    res = dict(task='instance', source='coco', source_meta=dict(classes=TEXTS),
               img=img, img_shape=(size, size), ori_shape=(size, size), img_path='m.png',
               gt_bboxes=HorizontalBoxes(np.array(boxes, np.float32)),
               gt_bboxes_labels=np.array([0, 1]), gt_ignore_flags=np.zeros(2, bool),
               gt_masks=BitmapMasks(things, size, size))
    return PackQueryMeldInputs()(ToUnifiedTargets()(res))


def _box_only_sample(h: int = 48, w: int = 56) -> dict:
    img, _ = _scene(64, 64)
    boxes = np.array([[4, 6, 20, 30], [24, 10, 50, 40], [30, 2, 44, 12]], np.float32)
    res = dict(task='detection', source='o365', source_meta=dict(classes=TEXTS),
               img=np.ascontiguousarray(img[:h, :w]), img_shape=(h, w), ori_shape=(h, w),
               img_path='b.png', gt_bboxes=HorizontalBoxes(boxes),
               gt_bboxes_labels=np.array([0, 1, 1]), gt_ignore_flags=np.zeros(3, bool))
    return PackQueryMeldInputs()(ToUnifiedTargets()(res))


def test_mixed_box_only_and_masked_batch_trains_one_step(tiny_model, monkeypatch,
                                                         single_thread):
    model = tiny_model()
    model.train()
    head = model.head
    data = model.data_preprocessor(pseudo_collate([_masked_sample(), _box_only_sample()]), True)
    masked, box_only = data['data_samples']
    assert masked.batch_input_shape == box_only.batch_input_shape == (64, 64)
    # the box-only sample reaches the head with its boxes only (no [3, 64, 64] array)
    assert isinstance(box_only.gt_instances.masks, BoxOnlyMasks)
    assert (box_only.gt_instances.masks.height, box_only.gt_instances.masks.width) == (64, 64)
    assert masked.gt_instances.masks.masks.shape == (2, 64, 64)

    captured = []
    real_levels, real_enc = head.forward_predictions, head.encoder_predictions

    def keep(masks):
        for m in masks:
            m.retain_grad()
            captured.append(m)

    def levels_spy(outs, last_only=False):
        cls, boxes, masks = real_levels(outs, last_only)
        keep(masks)
        return cls, boxes, masks

    def enc_spy(outs):
        preds = real_enc(outs)
        keep([preds[2]])
        return preds

    monkeypatch.setattr(head, 'forward_predictions', levels_spy)
    monkeypatch.setattr(head, 'encoder_predictions', enc_spy)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert all(torch.isfinite(v) for k, v in losses.items() if 'loss' in k)
    mask_terms = [v for k, v in losses.items() if 'loss_mask' in k or 'loss_dice' in k]
    assert len(mask_terms) > 4 and sum(mask_terms).item() > 0
    sum(mask_terms).backward()
    # the mask terms' gradient comes from the masked image only (dn and matching queries)
    grad_masked = sum(m.grad[0].abs().sum() for m in captured if m.grad is not None)
    grad_box_only = sum(m.grad[1].abs().sum() for m in captured if m.grad is not None)
    assert grad_masked > 0 and grad_box_only == 0

    # and one optimisation step on a fresh batch of the same kind
    monkeypatch.undo()
    model.zero_grad()
    before = [p.detach().clone() for p in head.mask_embed.parameters()]
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log_vars = model.train_step(pseudo_collate([_box_only_sample(), _masked_sample()]), wrapper)
    assert np.isfinite(float(log_vars['loss']))
    assert any(not torch.equal(a, b) for a, b in zip(before, head.mask_embed.parameters()))
