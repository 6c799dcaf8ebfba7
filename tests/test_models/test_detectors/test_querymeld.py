"""Tests of the QueryMeldNet detector: every task end to end, modes, bad input."""
import os.path as osp

import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from mmquerymeld.utils import INSTANCE_OFFSET

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(scope='module')
def model(tiny_model):
    m = tiny_model()
    m.eval()
    return m


def _predict(model, batch):
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        return model(**data, mode='predict')


OVERFIT_ITERS = 30  # ~30 s on 2 cores; the scene is learned by ~20 (see test_overfit.py)


@pytest.fixture(scope='module')
def trained_model(tiny_model, make_batch, overfit):
    """The tiny model after a short overfit on the panoptic scene of seed 0 (square, circle, sky,
    grass): its predictions have content that a prediction path ignoring the model would miss."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before the function-scoped single_thread
    try:
        m = tiny_model(seed=0)
        m.train()
        data = m.data_preprocessor(make_batch(tasks=('panoptic', ), seeds=[0]), True)
        torch.manual_seed(0)
        overfit(m, data, OVERFIT_ITERS)
    finally:
        torch.set_num_threads(previous)
    m.eval()
    return m


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_predict_every_task(trained_model, make_batch):
    model = trained_model
    tasks = ('semantic', 'instance', 'panoptic', 'referring', 'foreground', 'detection')
    batch = make_batch(tasks=tasks, seeds=[0] * len(tasks))  # every task on the learned scene
    results = _predict(model, batch)
    h = w = 64
    sem, ins, pan, ref, fg, det = results
    # ground truth of the panoptic scene: square, circle (things), sky, grass (stuff), labels 0-3
    gt = batch['data_samples'][2].gt_instances
    gt_masks = torch.from_numpy(gt.masks.to_ndarray().astype(bool))
    gt_labels = gt.labels.tolist()
    assert gt_labels == [0, 1, 2, 3]

    assert sem.pred_sem_seg.sem_seg.shape == (1, h, w)
    assert sem.pred_sem_seg.sem_seg.max() < 4 and sem.pred_sem_seg.sem_seg.min() >= 0
    # content: each region is predicted with its text (after 30 iterations: >= 0.95 here)
    sem_map = sem.pred_sem_seg.sem_seg[0]
    for m, label in zip(gt_masks, gt_labels):
        assert float((sem_map[m] == label).float().mean()) > 0.7, ('semantic', label)

    for res, k, task in ((ins, 4, 'instance'), (det, 4, 'detection')):
        p = res.pred_instances
        n = len(p)
        # top-k over queries x texts: exactly min(max_per_image, Q x K) predictions
        max_per_image = model.head.test_cfg.get(task, {}).get('max_per_image', 100)
        assert n == min(max_per_image, model.head.num_queries * k) > 0
        assert p.masks.shape == (n, h, w) and p.masks.dtype == torch.bool
        assert p.bboxes.shape == (n, 4) and p.scores.shape == (n, ) and p.labels.shape == (n, )
        assert set(p.query_types.tolist()) <= {0, 1} and (p.labels < k).all()
        assert (p.bboxes[:, 2:] <= w).all() and (p.bboxes >= 0).all()
        if task == 'detection':  # instance scores are rescored by mask quality after top-k
            assert (p.scores[:-1] >= p.scores[1:]).all()
        # content: among the 10 best predictions, each thing is found with its text
        top = p[:10]
        for g in (0, 1):  # square, circle
            same = top.labels == gt_labels[g]
            assert same.any(), (task, g)
            if task == 'instance':
                best = max(_mask_iou(m, gt_masks[g]) for m in top.masks[same])  # ~0.93 here
            else:
                best = float(bbox_overlaps(top.bboxes[same], gt.bboxes[g:g + 1]).max())  # ~0.8
            assert best > 0.5, (task, g, best)

    seg = pan.pred_panoptic_seg.sem_seg
    assert seg.shape == (1, h, w)
    labels = seg[0] % INSTANCE_OFFSET
    assert (labels <= 4).all()  # 4 = void (len(texts))
    # content: not all void, and each region carries its text (~0.97 here)
    assert float((labels < 4).float().mean()) > 0.5
    for m, label in zip(gt_masks, gt_labels):
        assert float((labels[m] == label).float().mean()) > 0.7, ('panoptic', label)
    # the segments listed in pred_instances are exactly the non-void ids of the map
    segs = pan.pred_instances
    assert 'query_types' in segs
    ids = segs.segment_ids.tolist()
    assert len(set(ids)) == len(ids) and set(ids) == set(seg[seg % INSTANCE_OFFSET < 4].tolist())
    thing_flags = batch['data_samples'][2].metainfo['thing_flags']
    for i, sid in enumerate(ids):
        assert torch.equal(segs.masks[i], seg[0] == sid)
        assert int(segs.labels[i]) == sid % INSTANCE_OFFSET
        assert bool(segs.is_thing[i]) == thing_flags[sid % INSTANCE_OFFSET]
        assert (sid >= INSTANCE_OFFSET) == bool(segs.is_thing[i])  # stuff ids carry no instance
    # the two things are separate segments
    square_id = seg[0][gt_masks[0]].mode().values
    circle_id = seg[0][gt_masks[1]].mode().values
    assert square_id != circle_id and square_id >= INSTANCE_OFFSET and circle_id >= INSTANCE_OFFSET

    p = ref.pred_instances
    assert p.masks.shape == (2, h, w) and p.labels.tolist() == [0, 1]
    assert p.scores.shape == (2, ) and p.query_types.shape == (2, )
    assert fg.pred_sem_seg.sem_seg.shape == (1, h, w)
    assert set(fg.pred_sem_seg.sem_seg.unique().tolist()) <= {0, 1}
    prob = fg.pred_sem_seg.prob
    assert prob.shape == (1, h, w) and prob.min() >= 0 and prob.max() <= 1
    # the foreground map is the mask of the best-scoring query: its binary map is prob >= 0.5
    assert torch.equal(fg.pred_sem_seg.sem_seg.bool(), prob >= 0.5)


def test_predict_rescales_to_ori_shape(model, make_batch):
    batch = make_batch(tasks=('instance', ))
    sample = batch['data_samples'][0]
    sample.set_metainfo(dict(ori_shape=(128, 96), scale_factor=(64 / 96, 64 / 128)))
    res = _predict(model, batch)[0]
    assert res.pred_instances.masks.shape[-2:] == (128, 96)
    boxes = res.pred_instances.bboxes
    assert (boxes[:, 0::2] <= 96).all() and (boxes[:, 1::2] <= 128).all()


def test_loss_and_tensor_modes(model, make_batch):
    model.train()
    try:
        data = model.data_preprocessor(make_batch(tasks=('panoptic', 'foreground')), True)
        losses = model(**data, mode='loss')
        assert all(torch.isfinite(v).all() for k, v in losses.items() if 'loss' in k)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        assert total > 0
        # per-layer, encoder-proposal and denoising supervision are all present
        for key in ('loss_mask', 'd0.loss_mask', 'enc.loss_cls', 'enc.loss_bbox',
                    'dn.loss_mask', 'dn.d0.loss_bbox'):
            assert key in losses, key
        out = model(**data, mode='tensor')
        masks = model.head.forward_predictions(out, last_only=True)[2][-1]
        assert masks[:, out.num_dn:].shape[:2] == (2, 30)
    finally:
        model.eval()


def test_bad_inputs_name_the_field(model, make_batch):
    batch = make_batch(tasks=('panoptic', ))
    batch['data_samples'][0].set_metainfo(dict(task='colouring'))
    with pytest.raises(ValueError, match=r"metainfo\['task'\]"):
        _predict(model, batch)
    batch = make_batch(tasks=('panoptic', ))
    batch['data_samples'][0].set_metainfo(dict(texts=[]))
    with pytest.raises(ValueError, match=r"metainfo\['texts'\]"):
        _predict(model, batch)
    batch = make_batch(tasks=('panoptic', ))
    del batch['data_samples'][0].gt_instances.mask_valid
    data = model.data_preprocessor(batch, True)
    with pytest.raises(ValueError, match='mask_valid'):
        model.loss(data['inputs'], data['data_samples'])


def test_other_backbone_with_neck(make_batch):
    """Any registered backbone + neck: here a ResNet-18 with a ChannelMapper to 64 channels."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from mmquerymeld.utils import register_all_modules
    register_all_modules()
    root = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    model_cfg = Config.fromfile(
        osp.join(root, 'configs', '_base_', 'models', 'querymeld_tiny.py')).model
    model_cfg.backbone.update(base_channels=32, depth=18)
    model_cfg.neck = dict(type='ChannelMapper', in_channels=[32, 64, 128, 256], out_channels=64,
                          kernel_size=1, norm_cfg=dict(type='GN', num_groups=32), num_outs=4)
    model_cfg.head.pixel_decoder.in_channels = [64, 64, 64, 64]
    model = MODELS.build(model_cfg)
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('instance', )), True)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert model.neck.convs[0].conv.weight.grad.abs().sum() > 0
