"""Tests of QueryMeldHead: outputs, gradients, denoising isolation, matching, task gating."""
import pytest
import torch

pytestmark = pytest.mark.usefixtures('single_thread')

NL, NC, LAYERS = 10, 20, 3


def _prepare(model, batch, training=True):
    data = model.data_preprocessor(batch, training)
    return data['inputs'], data['data_samples']


def _forward(model, batch, training=True, seed=0):
    model.train(training)
    inputs, samples = _prepare(model, batch, training)
    torch.manual_seed(seed)
    x = model.extract_feat(inputs)
    return model.head(x, samples), samples


def test_train_outputs_layout(tiny_model, make_batch):
    model = tiny_model()
    batch = make_batch(tasks=('panoptic', 'referring'))
    out, samples = _forward(model, batch)
    q = NL + NC
    kmax = 4  # panoptic vocabulary (4) and referring (2) padded to 4
    assert out['pred_logits'].shape == (2, q, kmax)
    assert out['pred_boxes'].shape == (2, q, 4)
    assert out['pred_masks'].shape == (2, q, 16, 16)  # 1/4 of 64 px
    assert out['text_valid'].tolist() == [[True] * 4, [True, True, False, False]]
    assert out['query_types'].tolist() == [0] * NL + [1] * NC
    # initial prediction + every decoder layer but the last
    assert len(out['aux_outputs']) == LAYERS
    for aux in out['aux_outputs']:
        assert aux['pred_logits'].shape == (2, q, kmax) and aux['pred_masks'].shape[1] == q
    enc = out['enc_outputs']
    assert enc['pred_logits'].shape == (2, NC, kmax) and enc['pred_boxes'].shape == (2, NC, 4)
    meta = out['dn_meta']
    assert meta['pad_size'] == meta['num_dn_groups'] * 4  # max 4 targets per image
    assert out['dn_outputs']['pred_masks'].shape == (2, meta['pad_size'], 16, 16)
    assert len(out['dn_outputs']['aux_outputs']) == LAYERS
    assert [len(i) for i in meta['dn_positive_idx']] == [4 * meta['num_dn_groups'],
                                                         2 * meta['num_dn_groups']]
    boxes = out['pred_boxes']
    assert ((boxes >= 0) & (boxes <= 1)).all()
    # eval mode: no denoising, only the last layer is predicted
    out_eval, _ = _forward(model, batch, training=False)
    assert out_eval['dn_outputs'] is None and out_eval['dn_meta'] is None
    assert out_eval['aux_outputs'] == [] and out_eval['pred_masks'].shape == (2, q, 16, 16)


def test_denoising_and_matching_queries_are_isolated(tiny_model, make_batch):
    model = tiny_model()
    batch = make_batch(tasks=('panoptic', ))
    out, _ = _forward(model, batch, seed=3)
    with torch.no_grad():
        model.head.learnable_content.weight.add_(torch.randn_like(
            model.head.learnable_content.weight))
    out2, _ = _forward(model, batch, seed=3)
    # changing the matching queries leaves every denoising prediction unchanged ...
    torch.testing.assert_close(out2['dn_outputs']['pred_masks'], out['dn_outputs']['pred_masks'])
    torch.testing.assert_close(out2['dn_outputs']['pred_boxes'], out['dn_outputs']['pred_boxes'])
    assert not torch.allclose(out2['pred_masks'], out['pred_masks'])
    # ... and the matching predictions do not depend on the denoising queries
    model.head.dn_generator = None
    out3, _ = _forward(model, batch, seed=3)
    torch.testing.assert_close(out3['pred_masks'], out2['pred_masks'])
    torch.testing.assert_close(out3['pred_logits'], out2['pred_logits'])


def test_both_query_sets_get_gradients(tiny_model, make_batch):
    model = tiny_model()
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('panoptic', 'instance')), True)
    x = model.extract_feat(data['inputs'])
    out = model.head(x, data['data_samples'])
    out['pred_logits'].retain_grad()
    out['pred_masks'].retain_grad()
    gts = [s.gt_instances for s in data['data_samples']]
    metas = [s.metainfo for s in data['data_samples']]
    losses = model.head.criterion(out, gts, metas)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    head = model.head
    for name, p in [('learnable content', head.learnable_content.weight),
                    ('learnable anchors', head.learnable_anchors.weight),
                    ('conditional selection', head.query_selector.enc_output.weight),
                    ('conditional box head', head.query_selector.enc_box_head.layers[-1].weight),
                    ('dual attention',
                     head.decoder.layers[0].dual_attn.learn_attn.attn.in_proj_weight),
                    ('denoising label projection', head.dn_generator.label_proj.weight),
                    ('backbone', model.backbone.conv1.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # both query types' final predictions receive gradient from the loss
    g = out['pred_masks'].grad.abs().flatten(2).sum(-1)  # [B, Q]
    assert g[:, :NL].sum() > 0 and g[:, NL:].sum() > 0


def _gt_like_outputs(out, sample, query, label):
    """Make matching query ``query`` predict the first ground truth perfectly."""
    gt = sample.gt_instances
    h, w = sample.metainfo['batch_input_shape']
    outputs = {k: (v.detach().clone() if torch.is_tensor(v) else v)
               for k, v in out.items() if k in ('pred_logits', 'pred_boxes', 'pred_masks',
                                                 'text_valid')}
    outputs['pred_logits'][:] = -10.0
    outputs['pred_logits'][0, query, label] = 10.0
    masks = torch.as_tensor(gt.masks.to_ndarray()[0], dtype=torch.float32)
    small = torch.nn.functional.interpolate(masks[None, None],
                                            size=outputs['pred_masks'].shape[-2:],
                                            mode='bilinear', align_corners=False)[0, 0]
    outputs['pred_masks'][:] = -10.0
    outputs['pred_masks'][0, query] = (small - 0.5) * 40
    box = gt.bboxes[0]
    cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
    bw, bh = (box[2] - box[0]) / w, (box[3] - box[1]) / h
    outputs['pred_boxes'][:] = torch.tensor([0.9, 0.9, 0.05, 0.05])
    outputs['pred_boxes'][0, query] = torch.stack([cx, cy, bw, bh])
    return outputs


@pytest.mark.parametrize('query,qtype', [(3, 0), (NL + 7, 1)])
def test_gt_can_match_either_query_type(tiny_model, make_batch, query, qtype):
    model = tiny_model()
    batch = make_batch(tasks=('instance', ))
    out, samples = _forward(model, batch, training=False)
    sample = samples[0]
    gt = sample.gt_instances[:1]
    outputs = _gt_like_outputs(out, sample, query, int(gt.labels[0]))
    q_idx, g_idx = model.head.criterion.match(
        outputs['pred_logits'][0], outputs['pred_boxes'][0], outputs['pred_masks'][0], gt,
        sample.metainfo)
    assert q_idx.tolist() == [query] and g_idx.tolist() == [0]
    assert int(out['query_types'][q_idx[0]]) == qtype


def test_box_only_sample_has_zero_mask_loss(tiny_model, make_batch):
    model = tiny_model()
    model.train()
    batch = make_batch(tasks=('detection', ))
    data = model.data_preprocessor(batch, True)
    losses = model.loss(data['inputs'], data['data_samples'])
    mask_keys = [k for k in losses if 'loss' in k and ('mask' in k or 'dice' in k)]
    box_keys = [k for k in losses if 'loss' in k and ('bbox' in k or 'iou' in k or 'box' in k)]
    assert mask_keys and box_keys
    values = {k: v.item() for k, v in losses.items()}
    assert all(values[k] == 0.0 for k in mask_keys), {k: values[k] for k in mask_keys}
    assert sum(values[k] for k in box_keys) > 0


def test_mask_enhanced_box_init_uses_proposal_masks(tiny_model, make_batch):
    model = tiny_model(mask_enhanced_box_init=True, denoising=None)
    out, _ = _forward(model, make_batch(tasks=('panoptic', )), training=True)
    # the initial conditional boxes are the boxes of the proposals' masks (or the fallback)
    init_boxes = out['aux_outputs'][0]['pred_boxes'][:, NL:]
    enc_masks = out['enc_outputs']['pred_masks']
    from mmquerymeld.models.layers import masks_to_anchor_logits
    from mmdet.models.layers.transformer.utils import inverse_sigmoid
    expected = masks_to_anchor_logits(enc_masks, inverse_sigmoid(
        out['enc_outputs']['pred_boxes'], eps=1e-5)).sigmoid()
    torch.testing.assert_close(init_boxes, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize('nl,nc', [(30, 0), (0, 30)])
def test_single_query_set_strategies(tiny_model, make_batch, nl, nc):
    model = tiny_model(num_learnable_queries=nl, num_conditional_queries=nc)
    assert all(layer.dual_attn.mode == 'none' for layer in model.head.decoder.layers)
    out, _ = _forward(model, make_batch(tasks=('panoptic', )))
    assert out['pred_logits'].shape[1] == 30
    assert out['query_types'].tolist() == [0] * nl + [1] * nc
    assert (out['enc_outputs'] is None) == (nc == 0)


def test_conditional_queries_avoid_batch_padding(tiny_model, make_batch):
    """A 32 px image padded into a 64 px batch: no encoder proposal is taken from the padding,
    and the proposals of the finest map (stride 8) are the smallest."""
    model = tiny_model()
    model.train()
    big, small = make_batch(size=64, seeds=[0]), make_batch(size=32, seeds=[1])
    batch = {k: big[k] + small[k] for k in big}
    inputs, samples = _prepare(model, batch, True)
    assert samples[1].metainfo['batch_input_shape'] == (64, 64)
    ratios = model.head.image_valid_ratios(samples, inputs.device)
    torch.testing.assert_close(ratios, torch.tensor([[1.0, 1.0], [0.5, 0.5]]))
    out = model.head(model.extract_feat(inputs), samples)
    # the encoder box head starts at zero: the proposals' boxes are the grid anchors
    boxes = out['enc_outputs']['pred_boxes']
    assert (boxes[1, :, :2] < 0.5).all()
    assert not (boxes[0, :, :2] < 0.5).all(-1).all()  # image 0 uses the whole frame
    # image 1: 20 of its 21 proposals; those of the 8x8 map (centres (i + 0.5) / 8) are 0.05 wide
    fine = ((boxes[1, :, 0] * 8 - 0.5) - (boxes[1, :, 0] * 8 - 0.5).round()).abs() < 1e-4
    fine &= (boxes[1, :, 0] * 4 - 0.5 - (boxes[1, :, 0] * 4 - 0.5).round()).abs() > 1e-4
    assert int(fine.sum()) >= 15
    torch.testing.assert_close(boxes[1, fine, 2:], torch.full_like(boxes[1, fine, 2:], 0.05))


def test_to_image_frame_crops_padding_and_rescales(tiny_model):
    """Masks and boxes of the padded 1/4 frame come back at ori_shape: padding cropped, then
    divided by scale_factor (w, h)."""
    head = tiny_model().head
    meta = dict(batch_input_shape=(64, 64), img_shape=(48, 64), ori_shape=(96, 128),
                scale_factor=(0.5, 0.5))
    logits = torch.full((1, 16, 16), -10.0)
    logits[0, :12, :8] = 10.0  # left half of the image (12 rows = 48 px of 64)
    # box of the left half of the image: xyxy (0, 0, 32, 48) in the padded 64 x 64 frame
    box = torch.tensor([[16 / 64, 24 / 64, 32 / 64, 48 / 64]])
    masks, boxes = head.to_image_frame(logits, box, meta, rescale=True)
    assert masks.shape == (1, 96, 128)
    fg = masks[0] > 0
    assert fg[:, :60].all() and not fg[:, 68:].any() and fg[95].any()
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 64.0, 96.0]]))
    masks, boxes = head.to_image_frame(logits, box, meta, rescale=False)
    assert masks.shape == (1, 48, 64)
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 32.0, 48.0]]))
