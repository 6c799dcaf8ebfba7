"""Tests of QueryMeldPostProcessor: frame conversion, task dispatch, test_cfg, swapping."""
import pytest
import torch
from mmdet.registry import MODELS

from mmquerymeld.models.heads import QueryMeldPostProcessor
from mmquerymeld.models.heads.postprocessing import postprocess_by_task
from mmquerymeld.utils import QUERY_TYPES, register_all_modules

L, C = QUERY_TYPES['learnable'], QUERY_TYPES['conditional']


def test_frame_conversion_crops_padding_and_rescales():
    """Masks and boxes of the padded 1/4 frame come back at ori_shape: padding cropped, then
    divided by scale_factor (w, h)."""
    meta = dict(batch_input_shape=(64, 64), img_shape=(48, 64), ori_shape=(96, 128),
                scale_factor=(0.5, 0.5))
    logits = torch.full((1, 16, 16), -10.0)
    logits[0, :12, :8] = 10.0  # left half of the image (12 rows = 48 px of 64)
    # box of the left half of the image: xyxy (0, 0, 32, 48) in the padded 64 x 64 frame
    box = torch.tensor([[16 / 64, 24 / 64, 32 / 64, 48 / 64]])
    proc = QueryMeldPostProcessor()
    masks = proc.mask_frame(logits, meta, rescale=True).upsample(logits)
    boxes = proc.boxes_to_frame(box, meta, rescale=True)
    assert masks.shape == (1, 96, 128)
    fg = masks[0] > 0
    assert fg[:, :60].all() and not fg[:, 68:].any() and fg[95].any()
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 64.0, 96.0]]))
    masks = proc.mask_frame(logits, meta, rescale=False).upsample(logits)
    boxes = proc.boxes_to_frame(box, meta, rescale=False)
    assert masks.shape == (1, 48, 64)
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 32.0, 48.0]]))


def _case(num_q=4, kmax=3, h=8):
    torch.manual_seed(0)
    cls = torch.randn(1, num_q, kmax)
    masks = torch.randn(1, num_q, h, h) * 4
    boxes = torch.rand(1, num_q, 4) * 0.4 + 0.3
    types = torch.tensor([L, L, C, C])[:num_q]
    return cls, masks, boxes, types


def _meta(task, texts, **extra):
    return dict(batch_input_shape=(32, 32), img_shape=(32, 32), ori_shape=(32, 32),
                scale_factor=(1.0, 1.0), task=task, texts=texts, **extra)


def test_predict_drops_padded_texts_and_applies_test_cfg():
    cls, masks, boxes, types = _case()
    # a padded text column (the image has 2 texts of the batch's 3) that would win everything
    cls[0, :, 2] = 20.0
    proc = QueryMeldPostProcessor(test_cfg=dict(instance=dict(max_per_image=3)))
    res = proc.predict(cls, masks, boxes, [_meta('instance', ['a', 'b'])], types)[0]
    inst = res['pred_instances']
    assert len(inst) == 3 and inst.labels.max() < 2  # test_cfg[instance], no padded label
    # the same as the pure functions in the image's frame
    meta = _meta('instance', [])
    expected = postprocess_by_task('instance', cls[0, :, :2], masks[0],
                                   proc.boxes_to_frame(boxes[0], meta), types,
                                   frame=proc.mask_frame(masks[0], meta),
                                   max_per_image=3)['pred_instances']
    torch.testing.assert_close(inst.scores, expected.scores)
    assert torch.equal(inst.masks, expected.masks)
    # without test_cfg the function's default (100) applies: all 4 x 2 pairs
    res = QueryMeldPostProcessor().predict(cls, masks, boxes, [_meta('instance', ['a', 'b'])],
                                           types)[0]
    assert len(res['pred_instances']) == 8


def test_every_task_dispatches_to_its_fields():
    cls, masks, boxes, types = _case()
    proc = QueryMeldPostProcessor()
    metas = [_meta('semantic', ['a', 'b', 'c']), _meta('panoptic', ['a', 'b', 'c'],
                                                       thing_flags=[True, False, False]),
             _meta('referring', ['x', 'y']), _meta('foreground', ['fg']),
             _meta('detection', ['a', 'b', 'c']), _meta('instance', ['a'])]
    expected = [{'pred_sem_seg'}, {'pred_panoptic_seg', 'pred_instances'}, {'pred_instances'},
                {'pred_sem_seg'}, {'pred_instances'}, {'pred_instances'}]
    n = len(metas)
    out = proc.predict(cls.expand(n, -1, -1), masks.expand(n, -1, -1, -1),
                       boxes.expand(n, -1, -1), metas, types)
    assert [set(o) for o in out] == expected
    assert len(out[2]['pred_instances']) == 2  # one per expression
    with pytest.raises(ValueError, match='batch sizes'):
        proc.predict(cls, masks, boxes, metas, types)


def test_test_cfg_keys_must_be_tasks():
    with pytest.raises(ValueError, match='not tasks'):
        QueryMeldPostProcessor(test_cfg=dict(panoptc=dict(object_mask_thr=0.1)))


def test_head_builds_it_from_test_cfg_or_a_swapped_config(tiny_model):
    register_all_modules()
    model = tiny_model()
    # the model-level test_cfg of the configs keeps its meaning
    assert isinstance(model.head.post_processor, QueryMeldPostProcessor)
    assert model.head.post_processor.test_cfg == model.head.test_cfg
    assert model.head.post_processor.task_cfg('panoptic')['object_mask_thr'] == 0.25

    @MODELS.register_module(force=True)
    class _FixedThresholdPostProcessor(QueryMeldPostProcessor):
        pass

    model = tiny_model(post_processor=dict(type='_FixedThresholdPostProcessor',
                                           test_cfg=dict(panoptic=dict(object_mask_thr=0.5))))
    assert type(model.head.post_processor).__name__ == '_FixedThresholdPostProcessor'
    assert model.head.post_processor.task_cfg('panoptic') == dict(object_mask_thr=0.5)


def test_half_precision_predictions_are_post_processed_in_fp32():
    """Under bf16 autocast (half-precision inference) the last level arrives in bf16; the
    scores must be computed in fp32 from it, not quantised to bf16's ~3 digits."""
    cls, masks, boxes, types = _case()
    cls16, masks16, boxes16 = (t.bfloat16() for t in (cls, masks, boxes))
    metas = [_meta('instance', ['a', 'b', 'c'])]
    proc = QueryMeldPostProcessor()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        half = proc.predict_by_feat([cls16], [boxes16], [masks16], metas, types)[0]
    full = proc.predict_by_feat([cls16.float()], [boxes16.float()], [masks16.float()], metas,
                                types)[0]
    assert half['pred_instances'].scores.dtype == torch.float32
    assert torch.equal(half['pred_instances'].scores, full['pred_instances'].scores)
    assert torch.equal(half['pred_instances'].masks, full['pred_instances'].masks)
