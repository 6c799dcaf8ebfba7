"""Tests of QueryMeldHead: per-layer outputs, gradients, denoising isolation, matching, gating."""
import pytest
import torch
from mmengine.structures import InstanceData

from mmquerymeld.models.heads import QueryMeldHeadOutputs

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


def _last_level(head, outs):
    """Final-layer (logits, boxes, masks), split into (denoising, matching) parts."""
    cls, boxes, masks = (p[-1] for p in head.forward_predictions(outs, last_only=True))
    n = outs.num_dn
    return (cls[:, :n], boxes[:, :n], masks[:, :n]), (cls[:, n:], boxes[:, n:], masks[:, n:])


def test_train_outputs_layout(tiny_model, make_batch):
    model = tiny_model()
    batch = make_batch(tasks=('panoptic', 'referring'))
    out, samples = _forward(model, batch)
    assert isinstance(out, QueryMeldHeadOutputs)
    q = NL + NC
    kmax = 4  # panoptic vocabulary (4) and referring (2) padded to 4
    meta = out.dn_meta
    assert meta['pad_size'] == meta['num_dn_groups'] * 4  # max 4 targets per image
    n = out.num_dn + q
    assert out.num_dn == meta['pad_size'] > 0
    # DINO's contract: states per layer, references = initial anchors + one per layer
    assert out.hidden_states.shape == (LAYERS, 2, n, 64)
    assert out.references.shape == (LAYERS + 1, 2, n, 4)
    assert out.init_states.shape == (2, n, 64)
    assert out.mask_features.shape == (2, 64, 16, 16)  # 1/4 of 64 px
    assert out.text_embeds.shape[:2] == (2, kmax)
    assert out.text_valid.tolist() == [[True] * 4, [True, True, False, False]]
    assert out.query_types.tolist() == [0] * NL + [1] * NC
    assert out.enc_outputs.states.shape == (2, NC, 64)
    assert out.enc_outputs.boxes.shape == (2, NC, 4)
    assert [len(i) for i in meta['dn_positive_idx']] == [4 * meta['num_dn_groups'],
                                                         2 * meta['num_dn_groups']]
    # per level: the initial prediction + every decoder layer
    cls, boxes, masks = model.head.forward_predictions(out)
    assert len(cls) == len(boxes) == len(masks) == LAYERS + 1
    for lg, bx, mk in zip(cls, boxes, masks):
        assert lg.shape == (2, n, kmax) and bx.shape == (2, n, 4) and mk.shape == (2, n, 16, 16)
        assert ((bx >= 0) & (bx <= 1)).all()
    torch.testing.assert_close(boxes[0], out.references[0])  # initial level: the anchors
    # the box predicted for layer l refines references[l] into the decoder's references[l + 1]
    for lid in range(LAYERS):
        torch.testing.assert_close(boxes[lid + 1], out.references[lid + 1])
    # eval mode: no denoising; the last layer alone can be predicted
    out_eval, _ = _forward(model, batch, training=False)
    assert out_eval.dn_meta is None and out_eval.num_dn == 0
    cls, boxes, masks = model.head.forward_predictions(out_eval, last_only=True)
    assert len(cls) == 1 and masks[0].shape == (2, q, 16, 16)


def test_denoising_and_matching_queries_are_isolated(tiny_model, make_batch):
    model = tiny_model()
    head = model.head
    batch = make_batch(tasks=('panoptic', ))
    dn, match = _last_level(head, _forward(model, batch, seed=3)[0])
    with torch.no_grad():
        content = head.query_generator.learnable_content.weight
        content.add_(torch.randn_like(content))
    dn2, match2 = _last_level(head, _forward(model, batch, seed=3)[0])
    # changing the matching queries leaves every denoising prediction unchanged ...
    torch.testing.assert_close(dn2[2], dn[2])
    torch.testing.assert_close(dn2[1], dn[1])
    assert not torch.allclose(match2[2], match[2])
    # ... and the matching predictions do not depend on the denoising queries
    head.dn_generator = None
    out3, _ = _forward(model, batch, seed=3)
    assert out3.num_dn == 0
    _, match3 = _last_level(head, out3)
    torch.testing.assert_close(match3[2], match2[2])
    torch.testing.assert_close(match3[0], match2[0])


def test_both_query_sets_get_gradients(tiny_model, make_batch):
    model = tiny_model()
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('panoptic', 'instance')), True)
    head = model.head
    x = model.extract_feat(data['inputs'])
    out = head(x, data['data_samples'])
    cls, boxes, masks = head.forward_predictions(out)
    masks[-1].retain_grad()
    gts = [s.gt_instances for s in data['data_samples']]
    metas = [s.metainfo for s in data['data_samples']]
    losses = head.loss_by_feat(cls, boxes, masks, head.encoder_predictions(out), out.text_valid,
                               gts, metas, out.dn_meta)
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    gen = head.query_generator
    for name, p in [('learnable content', gen.learnable_content.weight),
                    ('learnable anchors', gen.learnable_anchors.weight),
                    ('conditional selection', gen.query_selector.enc_output.weight),
                    ('conditional box head', gen.query_selector.enc_box_head.layers[-1].weight),
                    ('dual attention',
                     head.decoder.layers[0].dual_attn.learn_attn.attn.in_proj_weight),
                    ('denoising label projection', head.dn_generator.label_proj.weight),
                    ('backbone', model.backbone.conv1.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # both query types' final predictions receive gradient from the loss
    g = masks[-1].grad[:, out.num_dn:].abs().flatten(2).sum(-1)  # [B, Q]
    assert g[:, :NL].sum() > 0 and g[:, NL:].sum() > 0


def test_loss_equals_loss_by_feat_of_forward(tiny_model, make_batch):
    """``loss`` is ``forward`` -> ``forward_predictions`` -> ``loss_by_feat`` (same seed)."""
    model = tiny_model()
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('panoptic', 'detection')), True)
    head, samples = model.head, data['data_samples']
    x = model.extract_feat(data['inputs'])
    torch.manual_seed(5)
    losses = head.loss(x, samples)
    torch.manual_seed(5)
    out = head(x, samples)
    again = head.loss_by_feat(*head.forward_predictions(out), head.encoder_predictions(out),
                              out.text_valid, [s.gt_instances for s in samples],
                              [s.metainfo for s in samples], out.dn_meta)
    assert set(losses) == set(again)
    for key in ('loss_cls', 'd0.loss_mask', f'd{LAYERS - 1}.loss_bbox', 'enc.loss_cls',
                'dn.loss_bbox', f'dn.d{LAYERS - 1}.loss_dice'):
        assert key in losses, key
    for key in losses:
        torch.testing.assert_close(losses[key], again[key], rtol=0, atol=0)


def test_gt_can_match_either_query_type(tiny_model, make_batch):
    """The head's criterion matches over all queries, blind to type, optimally. Learnable query 3
    and conditional query NL + 7 are placed so that the optimum mixes the types while a greedy
    or one-type matching does not (the costs are worked out in
    test_querymeld_criterion.test_optimal_match_mixes_query_types_where_greedy_or_one_type_would_not):
    gt 0 at cx 0.2 goes to the conditional query at cx 0.05 although its cheapest query is the
    learnable one at cx 0.3, which serves gt 1 at cx 0.5. Every other query is far away."""
    model = tiny_model()
    batch = make_batch(tasks=('instance', ))
    out, samples = _forward(model, batch, training=False)
    meta = samples[0].metainfo
    h, w = meta['batch_input_shape']
    _, (cls, boxes, masks) = _last_level(model.head, out)
    learn_q, cond_q = 3, NL + 7
    assert int(out.query_types[learn_q]) == 0 and int(out.query_types[cond_q]) == 1
    cls = torch.zeros_like(cls[0])  # equal class scores: the box costs decide
    boxes = torch.tensor([0.9, 0.9, 0.05, 0.05]).repeat(boxes.shape[1], 1)
    boxes[learn_q] = torch.tensor([0.30, 0.5, 0.1, 0.1])
    boxes[cond_q] = torch.tensor([0.05, 0.5, 0.1, 0.1])
    gt = InstanceData(
        labels=torch.tensor([0, 1]),
        bboxes=torch.tensor([[0.15, 0.45, 0.25, 0.55], [0.45, 0.45, 0.55, 0.55]]) *
        torch.tensor([w, h, w, h]),
        masks=torch.zeros((2, h, w), dtype=torch.bool), mask_valid=torch.tensor([False, False]))
    q_idx, g_idx = model.head.criterion.match(cls, boxes, masks[0], gt, meta)
    assert dict(zip(g_idx.tolist(), q_idx.tolist())) == {0: cond_q, 1: learn_q}


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
    head = model.head
    out, _ = _forward(model, make_batch(tasks=('panoptic', )), training=True)
    # the initial conditional boxes are the boxes of the proposals' masks (or the fallback)
    init_boxes = out.references[0][:, NL:]
    _, _, enc_masks = head.encoder_predictions(out)
    # expectation computed here, not with the function under test: the extent of each mask's
    # positive logits as cxcywh of the mask frame, the encoder box where a mask is empty
    h, w = enc_masks.shape[-2:]
    expected = out.enc_outputs.boxes.detach().clone()
    for b, q in torch.nonzero(torch.ones(enc_masks.shape[:2])).tolist():
        ys, xs = torch.nonzero(enc_masks[b, q] > 0, as_tuple=True)
        if len(xs):
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            expected[b, q] = torch.stack([(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w,
                                          (y1 - y0) / h]).float()
    assert (enc_masks > 0).flatten(2).any(-1).any()  # some proposals do have a mask
    # 1.5e-3: anchors are stored as logits clamped at eps 1e-3 (a full-frame side reads 0.999)
    torch.testing.assert_close(init_boxes, expected, atol=1.5e-3, rtol=0)


@pytest.mark.parametrize('nl,nc', [(30, 0), (0, 30)])
def test_single_query_set_strategies(tiny_model, make_batch, nl, nc):
    model = tiny_model(num_learnable_queries=nl, num_conditional_queries=nc)
    assert all(layer.dual_attn.mode == 'none' for layer in model.head.decoder.layers)
    out, _ = _forward(model, make_batch(tasks=('panoptic', )))
    assert out.hidden_states.shape[2] == out.num_dn + 30
    assert out.query_types.tolist() == [0] * nl + [1] * nc
    assert (out.enc_outputs is None) == (nc == 0)


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
    boxes = out.enc_outputs.boxes
    assert (boxes[1, :, :2] < 0.5).all()
    assert not (boxes[0, :, :2] < 0.5).all(-1).all()  # image 0 uses the whole frame
    # image 1: 20 of its 21 proposals; those of the 8x8 map (centres (i + 0.5) / 8) are 0.05 wide
    fine = ((boxes[1, :, 0] * 8 - 0.5) - (boxes[1, :, 0] * 8 - 0.5).round()).abs() < 1e-4
    fine &= (boxes[1, :, 0] * 4 - 0.5 - (boxes[1, :, 0] * 4 - 0.5).round()).abs() > 1e-4
    assert int(fine.sum()) >= 15
    torch.testing.assert_close(boxes[1, fine, 2:], torch.full_like(boxes[1, fine, 2:], 0.05))


def test_predict_is_predict_by_feat_of_the_last_layer(tiny_model, make_batch):
    """``predict`` post-processes the last layer's matching predictions with the head's
    post-processor (built from ``test_cfg``)."""
    model = tiny_model()
    head = model.head
    assert head.post_processor.test_cfg == head.test_cfg
    out, samples = _forward(model, make_batch(tasks=('instance', 'referring')), training=False)
    metas = [s.metainfo for s in samples]
    with torch.no_grad():
        results = head.predict(model.extract_feat(_prepare(model, make_batch(
            tasks=('instance', 'referring')), False)[0]), samples)
        _, (cls, boxes, masks) = _last_level(head, out)
        direct = head.post_processor.predict(cls, masks, boxes, metas, head.query_types)
    assert len(results) == 2
    for res, ref in zip(results, direct):
        torch.testing.assert_close(res['pred_instances'].scores, ref['pred_instances'].scores)
        assert torch.equal(res['pred_instances'].masks, ref['pred_instances'].masks)
