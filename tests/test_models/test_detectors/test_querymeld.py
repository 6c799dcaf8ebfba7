"""Tests of the QueryMeldNet detector: every task end to end, modes, bad input."""
import os.path as osp

import pytest
import torch

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


def test_predict_every_task(model, make_batch):
    tasks = ('semantic', 'instance', 'panoptic', 'referring', 'foreground', 'detection')
    results = _predict(model, make_batch(tasks=tasks))
    h = w = 64
    sem, ins, pan, ref, fg, det = results
    assert sem.pred_sem_seg.sem_seg.shape == (1, h, w)
    assert sem.pred_sem_seg.sem_seg.max() < 4 and sem.pred_sem_seg.sem_seg.min() >= 0
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
    seg = pan.pred_panoptic_seg.sem_seg
    assert seg.shape == (1, h, w)
    labels = seg % INSTANCE_OFFSET
    assert (labels <= 4).all()  # 4 = void (len(texts))
    assert 'query_types' in pan.pred_instances
    p = ref.pred_instances
    assert p.masks.shape == (2, h, w) and p.labels.tolist() == [0, 1]
    assert p.scores.shape == (2, ) and p.query_types.shape == (2, )
    assert fg.pred_sem_seg.sem_seg.shape == (1, h, w)
    assert set(fg.pred_sem_seg.sem_seg.unique().tolist()) <= {0, 1}
    prob = fg.pred_sem_seg.prob
    assert prob.shape == (1, h, w) and prob.min() >= 0 and prob.max() <= 1


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
