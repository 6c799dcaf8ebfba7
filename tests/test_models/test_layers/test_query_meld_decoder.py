"""Tests of the dual-query cross-attention and the query meld decoder."""
import pytest
import torch

from mmquerymeld.models.layers import (DualQueryCrossAttention, QueryMeldDecoder,
                                       build_dn_attn_mask)
from mmdet.models.layers.transformer.utils import MLP, inverse_sigmoid

pytestmark = pytest.mark.usefixtures('single_thread')

C, P, NL, NC = 16, 3, 4, 5


def _query(seed=0):
    torch.manual_seed(seed)
    return torch.randn(2, P + NL + NC, C), torch.randn(2, P + NL + NC, C)


def _parts(x):
    return x[:, :P], x[:, P:P + NL], x[:, P + NL:]


@pytest.mark.parametrize('mode,learn_changes,cond_changes', [
    ('bidirectional', True, True),
    ('learnable_to_conditional', True, False),
    ('conditional_to_learnable', False, True),
    ('none', False, False),
])
def test_dual_attention_modes(mode, learn_changes, cond_changes):
    torch.manual_seed(0)
    attn = DualQueryCrossAttention(C, num_heads=4, mode=mode)
    q, pos = _query()
    out = attn(q, pos, P, NL, NC)
    assert out.shape == q.shape
    dn, learn, cond = _parts(out)
    dn0, learn0, cond0 = _parts(q)
    torch.testing.assert_close(dn, dn0)  # denoising queries are never touched
    assert (not torch.allclose(learn, learn0)) == learn_changes
    assert (not torch.allclose(cond, cond0)) == cond_changes
    # cross-type dependency: conditional outputs read the learnable set (and vice versa)
    q2 = q.clone()
    q2[:, P:P + NL] += 1.0
    out2 = attn(q2, pos, P, NL, NC)
    assert (not torch.allclose(_parts(out2)[2], cond)) == cond_changes
    q3 = q.clone()
    q3[:, P + NL:] += 1.0
    out3 = attn(q3, pos, P, NL, NC)
    assert (not torch.allclose(_parts(out3)[1], learn)) == learn_changes


def test_dual_attention_dn_as_conditional_reads_the_learnable_set_without_leaking():
    torch.manual_seed(0)
    plain = DualQueryCrossAttention(C, num_heads=4)
    as_cond = DualQueryCrossAttention(C, num_heads=4, dn_as_conditional=True)
    as_cond.load_state_dict(plain.state_dict())
    q, pos = _query()
    out, ref = as_cond(q, pos, P, NL, NC), plain(q, pos, P, NL, NC)
    # the matching queries are updated exactly as without the option
    torch.testing.assert_close(out[:, P:], ref[:, P:])
    # each denoising query is updated as a conditional query in its place would be
    dn, learn, _ = _parts(q)
    p_dn, p_learn, _ = _parts(pos)
    as_set = as_cond(torch.cat([learn, dn], 1), torch.cat([p_learn, p_dn], 1), 0, NL, P)
    torch.testing.assert_close(out[:, :P], as_set[:, NL:])
    assert not torch.allclose(out[:, :P], dn)
    # no ground truth leaks: changing the denoising queries leaves the matching outputs alone
    q2 = q.clone()
    q2[:, :P] += 1.0
    torch.testing.assert_close(as_cond(q2, pos, P, NL, NC)[:, P:], out[:, P:])
    # with the conditional direction off, the denoising queries pass through
    one_way = DualQueryCrossAttention(C, num_heads=4, mode='learnable_to_conditional',
                                      dn_as_conditional=True)
    torch.testing.assert_close(one_way(q, pos, P, NL, NC)[:, :P], dn)


def test_dual_attention_is_cross_only():
    # a learnable query's update does not depend on the other learnable queries
    torch.manual_seed(0)
    attn = DualQueryCrossAttention(C, num_heads=4)
    q, pos = _query()
    out = attn(q, pos, P, NL, NC)
    q2 = q.clone()
    q2[:, P + 1] += 3.0  # change learnable query 1 only
    out2 = attn(q2, pos, P, NL, NC)
    torch.testing.assert_close(out2[:, P + 0], out[:, P + 0])
    assert not torch.allclose(out2[:, P + 1], out[:, P + 1])


def test_dual_attention_identity_with_one_set_and_bad_mode():
    attn = DualQueryCrossAttention(C, num_heads=4)
    q, pos = _query()
    torch.testing.assert_close(attn(q, pos, P, NL + NC, 0), q)
    torch.testing.assert_close(attn(q, pos, P, 0, NL + NC), q)
    separate = DualQueryCrossAttention(C, num_heads=4)  # the default: one module per direction
    assert separate.learn_attn is not separate.cond_attn
    shared = DualQueryCrossAttention(C, num_heads=4, share_weights=True)
    assert shared.learn_attn is shared.cond_attn
    with pytest.raises(ValueError, match='mode'):
        DualQueryCrossAttention(C, mode='sideways')


def _decoder(num_layers=2):
    layer_cfg = dict(
        self_attn_cfg=dict(embed_dims=C, num_heads=4, attn_drop=0.0, batch_first=True),
        cross_attn_cfg=dict(embed_dims=C, num_heads=4, num_levels=2, num_points=2,
                            dropout=0.0, batch_first=True),
        ffn_cfg=dict(embed_dims=C, feedforward_channels=32, num_fcs=2, ffn_drop=0.0),
        dual_attn_cfg=dict(mode='bidirectional'))
    dec = QueryMeldDecoder(num_layers=num_layers, layer_cfg=layer_cfg)
    dec.init_weights()
    return dec


def _memory():
    shapes = torch.tensor([[4, 4], [2, 2]])
    start = torch.tensor([0, 16])
    return torch.randn(2, 20, C), shapes, start


def _decode(dec, query, anchors, memory, shapes, start, box_heads, self_attn_mask=None, **kw):
    """mmdet's DINO decoder call; returns the states and the refined boxes of every layer."""
    hidden, references = dec(query, value=memory, key_padding_mask=None,
                             self_attn_mask=self_attn_mask, reference_points=anchors,
                             spatial_shapes=shapes, level_start_index=start, valid_ratios=None,
                             reg_branches=box_heads, **kw)
    assert references.shape[0] == hidden.shape[0] + 1
    assert references[0] is anchors or torch.equal(references[0], anchors)
    return hidden, references[1:]


def test_decoder_shapes_and_refinement():
    torch.manual_seed(0)
    dec = _decoder()
    box_head = MLP(C, C, 4, 3)
    q, _ = _query()
    anchors = torch.rand(2, P + NL + NC, 4).clamp(0.1, 0.9)
    anchors.requires_grad_(True)
    memory, shapes, start = _memory()
    hidden, boxes = _decode(dec, q, anchors, memory, shapes, start, [box_head] * 2, num_dn=P,
                            num_learnable=NL, num_conditional=NC)
    assert len(hidden) == len(boxes) == 2
    assert hidden[0].shape == (2, P + NL + NC, C) and boxes[1].shape == (2, P + NL + NC, 4)
    assert ((boxes[1] > 0) & (boxes[1] < 1)).all()
    # the first layer refines the given anchors and passes gradients into them
    boxes[0].sum().backward()
    assert anchors.grad is not None and anchors.grad.abs().sum() > 0
    with pytest.raises(ValueError, match='box heads'):
        _decode(dec, q, anchors, memory, shapes, start, [box_head])


def test_decoder_keeps_denoising_and_matching_apart():
    torch.manual_seed(0)
    dec = _decoder()
    box_head = MLP(C, C, 4, 3)
    q, _ = _query()
    anchors = torch.rand(2, P + NL + NC, 4).clamp(0.1, 0.9)
    memory, shapes, start = _memory()
    mask = build_dn_attn_mask(1, P, NL + NC)
    kw = dict(self_attn_mask=mask, num_dn=P, num_learnable=NL, num_conditional=NC)
    hidden, _ = _decode(dec, q, anchors, memory, shapes, start, [box_head] * 2, **kw)
    q2 = q.clone()
    q2[:, P:] = torch.randn_like(q2[:, P:])  # change every matching query
    hidden2, _ = _decode(dec, q2, anchors, memory, shapes, start, [box_head] * 2, **kw)
    torch.testing.assert_close(hidden2[-1][:, :P], hidden[-1][:, :P])  # dn outputs unchanged
    assert not torch.allclose(hidden2[-1][:, P:], hidden[-1][:, P:])
    q3 = q.clone()
    q3[:, :P] = torch.randn_like(q3[:, :P])  # change the denoising queries
    hidden3, _ = _decode(dec, q3, anchors, memory, shapes, start, [box_head] * 2, **kw)
    torch.testing.assert_close(hidden3[-1][:, P:], hidden[-1][:, P:])  # matching unchanged
    # without the mask, information leaks
    hidden4, _ = _decode(dec, q3, anchors, memory, shapes, start, [box_head] * 2, num_dn=P,
                         num_learnable=NL, num_conditional=NC)
    assert not torch.allclose(hidden4[-1][:, P:], hidden[-1][:, P:])


def _set_grads(loss, attn, x):
    """Gradients of ``loss`` w.r.t. the input queries and each direction's attention weights."""
    learn_p = list(attn.learn_attn.parameters())
    cond_p = list(attn.cond_attn.parameters())
    grads = torch.autograd.grad(loss, [x] + learn_p + cond_p, allow_unused=True)
    gx = grads[0]
    norm = lambda gs: sum(0.0 if g is None else float(g.abs().sum()) for g in gs)  # noqa: E731
    return gx, norm(grads[1:1 + len(learn_p)]), norm(grads[1 + len(learn_p):])


@pytest.mark.parametrize('share_weights', [True, False])
def test_dual_attention_directions_get_gradient_from_both_sets(share_weights):
    """Each direction reads the other set and writes its own: a loss on the learnable outputs
    reaches both input sets through ``learn_attn`` only, and vice versa. With
    ``share_weights=False`` this tells the two modules apart (with True they are one object)."""
    torch.manual_seed(0)
    attn = DualQueryCrossAttention(C, num_heads=4, share_weights=share_weights)
    assert (attn.learn_attn is attn.cond_attn) == share_weights
    q, pos = _query()
    w = torch.randn_like(q)  # a random read-out: a plain sum of LayerNorm outputs is ~constant
    for target, other in ((slice(P, P + NL), slice(P + NL, None)),
                          (slice(P + NL, None), slice(P, P + NL))):
        x = q.clone().requires_grad_(True)
        out = attn(x, pos, P, NL, NC)
        gx, g_learn, g_cond = _set_grads((out[:, target] * w[:, target]).sum(), attn, x)
        assert gx[:, target].abs().sum() > 0, 'a set is updated from its own queries'
        assert gx[:, other].abs().sum() > 0, 'a set is updated from the other set'
        assert gx[:, :P].abs().sum() == 0, 'denoising queries are never read'
        learn_target = target.start == P
        if share_weights:
            assert g_learn > 0 and g_cond > 0
        else:
            # only the target set's own direction module receives gradient
            assert (g_learn > 0) == learn_target and (g_cond > 0) == (not learn_target)


def test_dual_attention_separate_weights_each_direction_updates_its_own_set():
    """share_weights=False: zeroing one direction's output projection changes only the set that
    direction writes; with the weights copied across, it equals the shared-weight module."""
    torch.manual_seed(0)
    attn = DualQueryCrossAttention(C, num_heads=4, share_weights=False)
    q, pos = _query()
    with torch.no_grad():
        out = attn(q, pos, P, NL, NC)
        for name, target, kept in (('learn_attn', slice(P, P + NL), slice(P + NL, None)),
                                   ('cond_attn', slice(P + NL, None), slice(P, P + NL))):
            zeroed = DualQueryCrossAttention(C, num_heads=4, share_weights=False)
            zeroed.load_state_dict(attn.state_dict())
            proj = getattr(zeroed, name).attn.out_proj
            proj.weight.zero_()
            proj.bias.zero_()
            out_z = zeroed(q, pos, P, NL, NC)
            # the other set is bit-identical: the zeroed module never touches it
            assert torch.equal(out_z[:, kept], out[:, kept]), name
            assert (out_z[:, target] - out[:, target]).abs().max() > 1e-2, name
            assert torch.equal(out_z[:, :P], q[:, :P])
        shared = DualQueryCrossAttention(C, num_heads=4, share_weights=True)
        shared.learn_attn.load_state_dict(attn.learn_attn.state_dict())
        shared.norm.load_state_dict(attn.norm.state_dict())
        attn.cond_attn.load_state_dict(attn.learn_attn.state_dict())
        # same weights in both directions -> the same function (summation order is the same:
        # the two modules run identical kernels on identical inputs)
        torch.testing.assert_close(attn(q, pos, P, NL, NC), shared(q, pos, P, NL, NC))


@pytest.mark.parametrize('dn_as_conditional', [False, True])
def test_dual_attention_separate_norms_each_direction_normalises_its_own_set(dn_as_conditional):
    """separate_norms=True: the conditional direction (and the denoising queries that take it)
    goes through ``cond_norm``, the learnable one through ``norm``; with equal norm parameters it
    is the one-norm module. Without it there is no ``cond_norm`` key (saved checkpoints load)."""
    torch.manual_seed(0)
    kw = dict(num_heads=4, dn_as_conditional=dn_as_conditional)
    one = DualQueryCrossAttention(C, **kw)
    assert not any(k.startswith('cond_norm') for k in one.state_dict())
    two = DualQueryCrossAttention(C, separate_norms=True, **kw)
    assert {'cond_norm.weight', 'cond_norm.bias'} <= set(two.state_dict())
    two.load_state_dict(one.state_dict(), strict=False)
    q, pos = _query()
    with torch.no_grad():
        two.cond_norm.load_state_dict(one.norm.state_dict())
        torch.testing.assert_close(two(q, pos, P, NL, NC), one(q, pos, P, NL, NC))
        before = two(q, pos, P, NL, NC)
        two.cond_norm.weight.mul_(2.0)
        two.cond_norm.bias.add_(1.0)
        after = two(q, pos, P, NL, NC)
    # the learnable set (and denoising queries that skip the dual attention) are bit-identical
    assert torch.equal(after[:, P:P + NL], before[:, P:P + NL])
    if not dn_as_conditional:
        assert torch.equal(after[:, :P], q[:, :P])
    # every row the conditional norm writes moves: the conditional queries (and denoising ones)
    rows = [slice(P + NL, None)] + ([slice(0, P)] if dn_as_conditional else [])
    for r in rows:
        assert ((after[:, r] - before[:, r]).abs().amax(-1) > 0.5).all(), r


def test_meld_model_trains_the_separate_conditional_norm(tiny_model, make_batch):
    """The config path: ``dual_attn_cfg.separate_norms=True`` in the tiny meld model gives every
    layer a ``cond_norm`` that the training loss reaches, beside the learnable direction's."""
    model = tiny_model(decoder=dict(layer_cfg=dict(dual_attn_cfg=dict(separate_norms=True))))
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('panoptic', 'instance')), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    for i, layer in enumerate(model.head.decoder.layers):
        dual = layer.dual_attn
        assert dual.cond_norm is not dual.norm
        for norm in (dual.norm, dual.cond_norm):
            for name, p in norm.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, (i, name)


@pytest.mark.parametrize('share_weights', [True, False])
def test_meld_model_trains_both_dual_attention_directions(tiny_model, make_batch, share_weights):
    """In the full model (tiny config, meld strategy), the training loss reaches every parameter
    of both directions' attention in every layer; with ``share_weights=False`` these are two
    modules, so a direction that is never run (or whose output is dropped) has no gradient."""
    model = tiny_model(decoder=dict(layer_cfg=dict(dual_attn_cfg=dict(
        share_weights=share_weights))))
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('panoptic', 'instance')), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    layers = model.head.decoder.layers
    assert len(layers) == 3
    for i, layer in enumerate(layers):
        dual = layer.dual_attn
        assert dual.mode == 'bidirectional'
        assert (dual.learn_attn is dual.cond_attn) == share_weights
        for direction in ('learn_attn', 'cond_attn'):
            for name, p in getattr(dual, direction).named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, (i, direction, name)


def _random_box_heads(n):
    """Per-layer box heads with a non-zero last layer (the head zero-initialises it)."""
    heads = [MLP(C, C, 4, 3) for _ in range(n)]
    for h in heads:
        torch.nn.init.normal_(h.layers[-1].weight, std=0.1)
    return heads


def test_decoder_is_mmdet_dino_decoder_with_the_former_keys():
    """QueryMeldDecoder subclasses mmdet's DinoTransformerDecoder and keeps its state-dict keys
    (layers.*, ref_point_head.*, norm.*): checkpoints of the former decoder load as they are."""
    from mmdet.models.layers.transformer.dino_layers import DinoTransformerDecoder
    dec = _decoder(num_layers=2)
    assert isinstance(dec, DinoTransformerDecoder)
    prefixes = sorted({k.split('.')[0] for k in dec.state_dict()})
    assert prefixes == ['layers', 'norm', 'ref_point_head']
    assert not hasattr(dec, 'post_norm')
    with pytest.raises(ValueError, match='post_norm_cfg'):
        QueryMeldDecoder(num_layers=1, layer_cfg=dec.layer_cfg, post_norm_cfg=dict(type='LN'))


def test_decoder_look_forward_twice_gradient_paths():
    """DINO 3.5: layer 1's box, predicted on top of references[1] as DINOHead does, sends
    gradient into layer 0's box head; layer 1's *state* does not (the reference its attention
    and positional queries read is detached), and neither does references[1] computed inside
    the decoder for the next layer's attention."""
    torch.manual_seed(0)
    dec = _decoder(num_layers=3)
    heads = _random_box_heads(3)
    q, _ = _query()
    anchors = torch.rand(2, P + NL + NC, 4).clamp(0.1, 0.9).requires_grad_(True)
    memory, shapes, start = _memory()
    seen = {}

    def grab(lid):
        def hook(module, args, kwargs):
            seen[lid] = kwargs['reference_points']
        return hook

    handles = [layer.cross_attn.register_forward_pre_hook(grab(i), with_kwargs=True)
               for i, layer in enumerate(dec.layers)]
    hidden, refs = dec(q, value=memory, key_padding_mask=None, self_attn_mask=None,
                       reference_points=anchors, spatial_shapes=shapes,
                       level_start_index=start, valid_ratios=None, reg_branches=heads,
                       num_dn=P, num_learnable=NL, num_conditional=NC)
    for h in handles:
        h.remove()
    assert hidden.shape == (3, 2, P + NL + NC, C) and refs.shape == (4, 2, P + NL + NC, 4)
    # references[1:] are undetached; the deformable attention reads detached copies after layer 0
    assert all(r.requires_grad for r in refs)
    assert seen[0].requires_grad and not seen[1].requires_grad and not seen[2].requires_grad
    torch.testing.assert_close(seen[1][:, :, 0], refs[1].detach())

    def head0_grad(loss):
        grads = torch.autograd.grad(loss, list(heads[0].parameters()), retain_graph=True,
                                    allow_unused=True)
        return sum(0.0 if g is None else float(g.abs().sum()) for g in grads)

    w = torch.randn(2, P + NL + NC, 4)
    box1 = (heads[1](hidden[1]) + inverse_sigmoid(refs[1], eps=1e-3)).sigmoid()
    assert head0_grad((box1 * w).sum()) > 0  # look-forward-twice
    assert head0_grad((hidden[1] * torch.randn_like(hidden[1])).sum()) == 0
    assert head0_grad((hidden[2] * torch.randn_like(hidden[2])).sum()) == 0
    # the box of layer 2 looks back one layer only: layer 0's head is out of its reach
    box2 = (heads[2](hidden[2]) + inverse_sigmoid(refs[2], eps=1e-3)).sigmoid()
    assert head0_grad((box2 * w).sum()) == 0
    # the refined box equals the returned reference (same state, same delta)
    torch.testing.assert_close(box1, refs[2])
