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
    assert t.masks.shape == (2, 32, 48) and t.masks.dtype == torch.bool
    assert t.masks[0].sum() == 120 and bool(t.masks[0, :10, :12].all())
    assert bool(t.masks[1, 19, 23]) and t.masks[:, 20:].sum() == 0 and t.masks[:, :, 24:].sum() == 0
    # cxcywh normalised by (W, H) of batch_input_shape
    assert torch.allclose(t.norm_bboxes[0], torch.tensor([6 / 48, 5 / 32, 12 / 48, 10 / 32]))
    assert t.mask_valid.tolist() == [True, False]
    assert t.labels.dtype == torch.long


def test_box_type_and_missing_masks_mean_box_only():
    gt = InstanceData(labels=torch.tensor([0]),
                      bboxes=HorizontalBoxes(torch.tensor([[2., 2., 8., 8.]])))
    t = prepare_gt_targets(gt, dict(batch_input_shape=(16, 16)))
    assert t.mask_valid.tolist() == [False]
    assert t.masks.shape == (1, 16, 16) and t.masks.sum() == 0
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
