"""Tests of the gt preparation (padding, normalisation, box-only handling, errors)."""
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from mmquerymeld.models.task_modules import prepare_gt_targets


def test_bitmap_masks_at_img_shape_are_padded_and_boxes_normalised():
    masks = np.zeros((2, 20, 24), np.uint8)
    masks[0, :10, :12] = 1
    masks[1, 19, 23] = 1
    gt = InstanceData(labels=torch.tensor([1, 0]),
                      bboxes=torch.tensor([[0., 0., 12., 10.], [23., 19., 24., 20.]]),
                      masks=BitmapMasks(masks, 20, 24), mask_valid=torch.tensor([True, False]))
    meta = dict(batch_input_shape=(32, 48), img_shape=(20, 24))
    t = prepare_gt_targets(gt, meta)
    # only the mask-valid target's mask is converted and padded
    assert t.valid_masks.shape == (1, 32, 48) and t.valid_masks.dtype == torch.bool
    assert t.valid_masks[0].sum() == 120 and bool(t.valid_masks[0, :10, :12].all())
    assert t.mask_rows.tolist() == [0, -1]
    assert torch.equal(t.gather_masks(torch.tensor([0])), t.valid_masks[:1])
    # cxcywh normalised by (W, H) of batch_input_shape
    assert torch.allclose(t.norm_bboxes[0], torch.tensor([6 / 48, 5 / 32, 12 / 48, 10 / 32]))
    assert t.mask_valid.tolist() == [True, False]
    assert t.labels.dtype == torch.long


def test_box_type_and_missing_masks_mean_box_only():
    gt = InstanceData(labels=torch.tensor([0]),
                      bboxes=HorizontalBoxes(torch.tensor([[2., 2., 8., 8.]])))
    t = prepare_gt_targets(gt, dict(batch_input_shape=(16, 16)))
    assert t.mask_valid.tolist() == [False]
    assert t.valid_masks.shape == (0, 16, 16)
    assert torch.allclose(t.bboxes, torch.tensor([[2., 2., 8., 8.]]))


def test_errors_name_file_and_field():
    meta = dict(batch_input_shape=(16, 16), img_path='a/b.jpg')
    with pytest.raises(ValueError, match='b.jpg.*mask_valid'):
        prepare_gt_targets(
            InstanceData(labels=torch.tensor([0]), bboxes=torch.zeros(1, 4),
                         masks=torch.zeros(1, 16, 16), mask_valid=torch.tensor([[True, True]])),
            meta)
    with pytest.raises(ValueError, match='b.jpg.*bboxes'):
        prepare_gt_targets(InstanceData(labels=torch.tensor([0]), bboxes=torch.zeros(1, 5)),
                           meta)
    with pytest.raises(ValueError, match='b.jpg.*masks'):
        prepare_gt_targets(
            InstanceData(labels=torch.tensor([0]), bboxes=torch.zeros(1, 4),
                         masks=torch.zeros(1, 16)), meta)
    with pytest.raises(TypeError, match='b.jpg.*masks'):
        prepare_gt_targets(
            InstanceData(labels=torch.tensor([0]), bboxes=torch.zeros(1, 4),
                         masks=[np.zeros((16, 16))]), meta)
    with pytest.raises(KeyError, match='batch_input_shape'):
        prepare_gt_targets(InstanceData(labels=torch.tensor([0]), bboxes=torch.zeros(1, 4)),
                           dict(img_path='x.png'))


def test_boxes_clamped_once_to_the_batch_frame():
    """A box partly outside the frame is its visible part, in pixels and normalised alike."""
    gt = InstanceData(labels=torch.tensor([0, 1]),
                      bboxes=torch.tensor([[-10., 4., 30., 20.], [40., 30., 60., 40.]]),
                      mask_valid=torch.tensor([False, False]))
    t = prepare_gt_targets(gt, dict(batch_input_shape=(32, 48)))
    assert t.bboxes.tolist() == [[0., 4., 30., 20.], [40., 30., 48., 32.]]
    torch.testing.assert_close(
        t.norm_bboxes, torch.tensor([[15 / 48, 12 / 32, 30 / 48, 16 / 32],
                                     [44 / 48, 31 / 32, 8 / 48, 2 / 32]]))
    assert bool((t.norm_bboxes >= 0).all()) and bool((t.norm_bboxes <= 1).all())


@pytest.mark.parametrize('task,flags,policy,expected', [
    ('semantic', None, 'things', [False, False, False]),
    ('panoptic', [True, False, True], 'things', [True, False, True]),
    ('panoptic', None, 'things', [True, True, True]),
    ('instance', None, 'things', [True, True, True]),
    ('semantic', None, 'all', [True, True, True]),
    ('panoptic', [True, False, True], 'all', [True, True, True]),
])
def test_box_valid_by_task_and_thing_flags(task, flags, policy, expected):
    gt = InstanceData(labels=torch.tensor([0, 1, 2]), bboxes=torch.zeros(3, 4),
                      mask_valid=torch.zeros(3, dtype=torch.bool))
    meta = dict(batch_input_shape=(16, 16), task=task)
    if flags is not None:
        meta['thing_flags'] = flags
    t = prepare_gt_targets(gt, meta, box_supervision=policy)
    assert t.box_valid.tolist() == expected
    gt.box_valid = torch.tensor([True, False, False])  # given by the data: used as is
    assert prepare_gt_targets(gt, meta, box_supervision=policy).box_valid.tolist() == \
        [True, False, False]


def test_batch_preparation_passes_prepared_targets_through():
    from mmquerymeld.models.task_modules import GtTargets, prepare_batch_gt_targets
    meta = dict(batch_input_shape=(16, 16), task='panoptic', thing_flags=[True, False])
    gt = InstanceData(labels=torch.tensor([0, 1]), bboxes=torch.tensor([[0., 0., 4., 4.]] * 2),
                      masks=torch.ones(2, 16, 16), mask_valid=torch.tensor([False, True]))
    first = prepare_batch_gt_targets([gt], [meta])
    assert isinstance(first[0], GtTargets) and first[0].box_valid.tolist() == [True, False]
    assert first[0].valid_masks.shape == (1, 16, 16) and first[0].mask_rows.tolist() == [-1, 0]
    again = prepare_batch_gt_targets(first, [meta])
    assert again[0] is first[0]
    moved = first[0].to('cpu')
    assert isinstance(moved, GtTargets) and moved.valid_masks.shape == (1, 16, 16)
    # indexing keeps the rows pointing into the whole valid_masks
    sub = first[0][torch.tensor([1])]
    assert torch.equal(sub.gather_masks(torch.tensor([0])), first[0].valid_masks)
    with pytest.raises(ValueError, match='thing_flags'):
        prepare_gt_targets(InstanceData(labels=torch.tensor([5]), bboxes=torch.zeros(1, 4)),
                           meta)
