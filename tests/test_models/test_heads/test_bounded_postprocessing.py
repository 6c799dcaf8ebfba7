"""Memory-bounded post-processing: each task upsamples only what it keeps, semantic / panoptic
work in row bands with no working tensor that grows with the vocabulary or the query count at
full resolution, and the banded results equal the straightforward full-resolution computation
(written here independently) up to interpolation rounding at near-tie pixels."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mmquerymeld.models.heads import QueryMeldPostProcessor
from mmquerymeld.models.heads.mask_frame import MaskFrame
from mmquerymeld.utils import INSTANCE_OFFSET

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
# the padded 64 x 64 batch frame holds a 60 x 64 image of a 120 x 128 original (1/4: 16 x 16)
LOW, PAD, IMG, ORI = (16, 16), (64, 64), (60, 64), (120, 128)
H, W = ORI
TIE = 1e-4  # MaskFrame vs F.interpolate: <= ~1e-5 on these logits (test_mask_frame: 1e-4)


def meta(task, num_texts, **extra):
    return dict(batch_input_shape=PAD, img_shape=IMG, ori_shape=ORI, scale_factor=(0.5, 0.5),
                task=task, texts=[f't{i}' for i in range(num_texts)], **extra)


def predictions(num_q, num_k, seed=0):
    """Random predictions whose masks own regions: a random query per 4 x 4 block of the
    1/4 frame is positive there (+5), all others negative (-5), plus noise."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(num_q, num_k, generator=g) * 2 - 1
    owner = torch.randint(0, num_q, (LOW[0] // 4, LOW[1] // 4), generator=g)
    owner = owner.repeat_interleave(4, 0).repeat_interleave(4, 1)
    masks = torch.where(owner == torch.arange(num_q)[:, None, None], 5.0, -5.0)
    masks = masks + torch.randn(num_q, *LOW, generator=g) * 2
    boxes = torch.rand(num_q, 4, generator=g) * 0.3 + 0.3
    types = torch.randint(0, 2, (num_q, ), generator=g)
    return cls, masks, boxes, types


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (every intermediate, not just outputs)."""

    def __init__(self):
        super().__init__()
        self.numel, self.shape = 0, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.shape = t.numel(), tuple(t.shape)
        return out


@pytest.fixture
def upsample_calls(monkeypatch):
    """(masks, rows) of every MaskFrame.upsample call (the one path to full resolution)."""
    calls = []
    original = MaskFrame.upsample

    def spy(self, mask_logits, rows=None):
        out = original(self, mask_logits, rows)
        calls.append((mask_logits.shape[0], out.shape[1]))
        return out

    monkeypatch.setattr(MaskFrame, 'upsample', spy)
    return calls


@pytest.mark.parametrize('task,num_k,cfg,kept', [
    ('instance', 3, dict(max_per_image=5), 5),
    ('referring', 3, {}, 3),
    ('foreground', 1, {}, 1),
    ('detection', 3, dict(max_per_image=5), 5),
    ('detection', 3, dict(max_per_image=5, with_masks=False), 0),
])
def test_selecting_tasks_upsample_at_most_what_they_keep(upsample_calls, task, num_k, cfg,
                                                         kept):
    num_q = 40
    cls, masks, boxes, types = predictions(num_q, num_k)
    proc = QueryMeldPostProcessor(test_cfg={task: cfg})
    with LargestTensor() as largest:
        out = proc.predict_single(cls, masks, boxes, meta(task, num_k), types)
    assert sum(n for n, _ in upsample_calls) <= kept
    assert all(rows == H for _, rows in upsample_calls)
    # no tensor holds more than the kept masks at full resolution (Q x H x W before)
    assert largest.numel <= max(kept * H * W, num_q * num_k * 4, 4 * W), largest.shape
    if task == 'foreground':
        assert out['pred_sem_seg'].prob.shape == (1, H, W)
    else:
        pred = out['pred_instances']
        assert ('masks' in pred) == (kept > 0)
        if kept:
            assert pred.masks.shape == (len(pred), H, W)


@pytest.mark.parametrize('task', ['semantic', 'panoptic'])
def test_dense_tasks_peak_tensor_bounded_independently_of_vocabulary(upsample_calls, task):
    num_q, num_k = 20, 400  # K x H x W = 6.1M elements; one band below is 20 x 4 rows x W
    cls, masks, boxes, types = predictions(num_q, num_k)
    budget = num_q * 4 * W
    cfg = dict(object_mask_thr=0.0, iou_thr=0.5) if task == 'panoptic' else {}
    proc = QueryMeldPostProcessor(test_cfg={task: cfg}, max_tile_elements=budget)
    extra = dict(thing_flags=[k % 2 == 0 for k in range(num_k)]) if task == 'panoptic' else {}
    with LargestTensor() as largest:
        out = proc.predict_single(cls, masks, boxes, meta(task, num_k, **extra), types)
    assert upsample_calls and all(n * rows * W <= budget for n, rows in upsample_calls)
    assert sum(rows for _, rows in upsample_calls) == H  # every output row exactly once
    segments = len(out['pred_instances']) if task == 'panoptic' else 0
    assert segments < num_q
    # bands of Q x rows x W and text chunks of the same size; the maps themselves are H x W;
    # panoptic's kept segment masks S x H x W (what the task keeps)
    assert largest.numel <= max(budget, H * W, num_q * num_k, segments * H * W), largest.shape


def semantic_reference(cls_probs, full_logits):
    """Mask2Former's semantic inference at full resolution: einsum, arg-max, and its margin."""
    scores = torch.einsum('qk,qhw->khw', cls_probs, full_logits.sigmoid())
    top2 = scores.topk(2, dim=0).values
    return scores.argmax(0), top2[0] - top2[1]


@pytest.mark.parametrize('sharpen', [None, 0.06])
def test_banded_semantic_equals_full_resolution_reference(two_step_reference, sharpen):
    num_q, num_k = 30, 37
    cls, masks, boxes, types = predictions(num_q, num_k, seed=1)
    # 2 rows per band, 4 text chunks of 10 (the last 7): bands and chunks both exercised
    proc = QueryMeldPostProcessor(test_cfg=dict(semantic=dict(sharpen_temperature=sharpen)),
                                  max_tile_elements=num_q * 2 * W)
    seg = proc.predict_single(cls, masks, boxes, meta('semantic', num_k), types)
    seg = seg['pred_sem_seg'].sem_seg[0]
    probs = cls.sigmoid() if sharpen is None else (cls.sigmoid() / sharpen).softmax(-1)
    ref, margin = semantic_reference(probs, two_step_reference(masks, PAD, IMG, ORI))
    differ = seg != ref
    assert len(ref.unique()) > 5  # a map with many texts, not a constant
    assert not differ[margin > TIE].any()  # differences only where two texts tie
    assert int(differ.sum()) <= 2


def panoptic_reference(cls, full_logits, thing_flags, object_mask_thr, iou_thr, mask_thr=0.5):
    """Mask2Former's panoptic inference (sigmoid classes), straightforward at full resolution.

    Returns the map and per pixel the margin of its decisions (winner vs runner-up score,
    winner's mask probability vs ``mask_thr``)."""
    num_k = cls.shape[1]
    scores, labels = cls.sigmoid().max(-1)
    order = [q for q in scores.argsort(descending=True).tolist() if scores[q] > object_mask_thr]
    probs = full_logits.sigmoid()[order]
    weighted = scores[order][:, None, None] * probs
    winner = weighted.argmax(0)
    top2 = weighted.topk(2, dim=0).values
    own = probs >= mask_thr
    margin = torch.minimum(top2[0] - top2[1],
                           (probs.gather(0, winner[None])[0] - mask_thr).abs())
    pan = torch.full(winner.shape, num_k, dtype=torch.long)
    instance = 1
    for i, q in enumerate(order):
        won = winner == i
        kept = won & own[i]
        if own[i].sum() == 0 or kept.sum() == 0 or won.sum() / own[i].sum() < iou_thr:
            continue
        label = int(labels[q])
        if thing_flags[label]:
            pan[kept] = label + instance * INSTANCE_OFFSET
            instance += 1
        else:
            pan[kept] = label
    return pan, margin


@pytest.mark.parametrize('rescale_frame', [False, True])
def test_banded_panoptic_equals_full_resolution_reference(two_step_reference, rescale_frame):
    num_q, num_k = 24, 6
    cls, masks, boxes, types = predictions(num_q, num_k, seed=2)
    cls = cls + 1.5
    flags = [True, True, True, False, False, False]
    cfg = dict(object_mask_thr=0.3, iou_thr=0.6)
    if rescale_frame:  # banded through the padded, rescaled frame
        proc = QueryMeldPostProcessor(test_cfg=dict(panoptic=cfg),
                                      max_tile_elements=num_q * 3 * W)
        out = proc.predict_single(cls, masks, boxes, meta('panoptic', num_k, thing_flags=flags),
                                  types)
        full = two_step_reference(masks, PAD, IMG, ORI)
    else:  # the banding alone: masks already in the output frame, bands of 3 rows
        from mmquerymeld.models.heads.postprocessing import postprocess_panoptic
        full = two_step_reference(masks, PAD, IMG, ORI)
        pan, inst = postprocess_panoptic(cls, full, types, flags, **cfg,
                                         frame=MaskFrame.identity((H, W), num_q * 3 * W))
        out = dict(pred_panoptic_seg=pan, pred_instances=inst)
    seg = out['pred_panoptic_seg'].sem_seg[0]
    ref, margin = panoptic_reference(cls, full, flags, **cfg)
    assert len(ref.unique()) >= 4 and (ref % INSTANCE_OFFSET < num_k).any()
    differ = seg != ref
    if rescale_frame:
        assert not differ[margin > TIE].any() and int(differ.sum()) <= 2
    else:
        assert not differ.any()
    # the listed segments are the map's ids, with their masks
    inst = out['pred_instances']
    assert sorted(inst.segment_ids.tolist()) == sorted(set(seg.unique().tolist()) - {num_k})
    for sid, mask in zip(inst.segment_ids, inst.masks):
        assert torch.equal(mask, seg == sid)


def test_sharpening_flips_semantic_argmax_and_panoptic_scores():
    """Mask DINO's softmax(sigmoid / T): per query a near one-hot over texts, so two weak text-1
    queries outvote one confident text-0 query; raw sigmoid scores let text 0 win."""
    logit = torch.logit
    cls = logit(torch.tensor([[0.9, 0.1], [0.1, 0.3], [0.1, 0.3]]))
    masks = torch.full((3, 4, 4), 8.0)  # every query covers every pixel
    # raw: text 0 = 0.9 + 0.1 + 0.1 = 1.1 > text 1 = 0.7; sharpened: ~1.07 < ~1.93
    for temp, expected in ((None, 0), (0.06, 1)):
        proc = QueryMeldPostProcessor(test_cfg=dict(semantic=dict(sharpen_temperature=temp)))
        m = dict(batch_input_shape=(16, 16), img_shape=(16, 16), ori_shape=(16, 16),
                 task='semantic', texts=['a', 'b'])
        seg = proc.predict_single(cls, masks, torch.rand(3, 4), m)['pred_sem_seg'].sem_seg
        assert (seg == expected).all(), temp
    # panoptic: kept by the sigmoid score (0.3 > 0.25), scored by the sharpened one (~0.96)
    from mmquerymeld.models.heads.postprocessing import postprocess_panoptic
    cls_p = logit(torch.tensor([[0.3, 0.1]]))
    _, raw = postprocess_panoptic(cls_p, masks[:1], None, [True, False])
    _, sharp = postprocess_panoptic(cls_p, masks[:1], None, [True, False],
                                    sharpen_temperature=0.06)
    torch.testing.assert_close(raw.scores, torch.tensor([0.3]))
    torch.testing.assert_close(sharp.scores, torch.tensor([0.3, 0.1]).div(0.06).softmax(0)[:1])
    _, none = postprocess_panoptic(logit(torch.tensor([[0.2, 0.01]])), masks[:1], None,
                                   [True, False], sharpen_temperature=0.06)
    assert len(none) == 0  # sharpened 0.96 would pass 0.25; the sigmoid 0.2 does not
    with pytest.raises(ValueError, match='sharpen_temperature'):
        postprocess_panoptic(cls_p, masks[:1], None, [True, False], sharpen_temperature=0.0)


def test_configs_sharpen_r50_by_default_not_the_tiny_model():
    r50 = Config.fromfile(osp.join(REPO, 'configs/_base_/models/querymeld_r50.py')).model
    tiny = Config.fromfile(osp.join(REPO, 'configs/_base_/models/querymeld_tiny.py')).model
    for task in ('semantic', 'panoptic'):
        assert r50.test_cfg[task]['sharpen_temperature'] == 0.06
        assert tiny.test_cfg[task]['sharpen_temperature'] is None
