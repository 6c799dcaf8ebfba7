"""Look-forward-twice box refinement in the head (issue 9, item 5; DINO 3.5).

The box of decoder layer ``l`` is ``sigmoid(box_head_l(h_l) + inverse_sigmoid(references[l]))``
with ``references[l]`` layer ``l - 1``'s refined box *undetached*: layer ``l``'s box loss also
trains layer ``l - 1``'s box head, while the box layer ``l``'s attention reads is detached.
"""
import pytest
import torch

pytestmark = pytest.mark.usefixtures('single_thread')


def _head_outputs(tiny_model, make_batch, train=True, **head_overrides):
    model = tiny_model(**head_overrides)
    head = model.head
    with torch.no_grad():  # non-zero box deltas (the head starts them at zero)
        for box_head in head.box_heads:
            box_head.layers[-1].weight.normal_(std=0.1)
    model.train(train)
    data = model.data_preprocessor(make_batch(tasks=('instance', 'referring')), train)
    outs = head(model.extract_feat(data['inputs']), data['data_samples'])
    return head, outs


def _param_grad(loss, module):
    grads = torch.autograd.grad(loss, list(module.parameters()), retain_graph=True,
                                allow_unused=True)
    return sum(0.0 if g is None else float(g.abs().sum()) for g in grads)


def test_box_loss_of_layer_l_trains_layer_l_minus_1(tiny_model, make_batch):
    head, outs = _head_outputs(tiny_model, make_batch, share_box_head=False)
    assert head.num_layers == 3 and len(head.box_heads) == 3 and head.initial_pred
    _, boxes, _ = head.forward_predictions(outs)
    assert len(boxes) == head.num_layers + 1  # initial prediction first
    torch.manual_seed(0)
    w = torch.randn_like(boxes[-1])
    for lid in (1, 2):
        box_loss = (boxes[lid + 1] * w).sum()  # layer lid's boxes only
        # look-forward-twice: into layer lid-1's box head (through references[lid]) ...
        assert _param_grad(box_loss, head.box_heads[lid - 1]) > 0, lid
        # ... and its own, but no further back and never forward
        assert _param_grad(box_loss, head.box_heads[lid]) > 0, lid
        for other in range(head.num_layers):
            if other not in (lid - 1, lid):
                assert _param_grad(box_loss, head.box_heads[other]) == 0, (lid, other)
        # the reference layer lid's attention read is detached: its state (hence its class
        # and mask predictions) gets nothing from earlier box heads
        state = outs.hidden_states[lid]
        state_loss = (state * torch.randn_like(state)).sum()
        for other in range(lid + 1):
            assert _param_grad(state_loss, head.box_heads[other]) == 0, (lid, other)


def test_shared_box_head_output_of_layer_l_minus_1_gets_layer_l_box_gradient(tiny_model,
                                                                              make_batch):
    """Shared box head (the default): the delta it predicted for layer 1 inside the decoder
    receives gradient from layer 2's box loss (look-forward-once leaves it out of the graph)."""
    model = tiny_model()
    head = model.head
    assert len(head.box_heads) == 1
    deltas = []
    handle = head.box_heads[0].register_forward_hook(lambda m, i, o: deltas.append(o))
    model.train()
    data = model.data_preprocessor(make_batch(tasks=('instance', 'referring')), True)
    outs = head(model.extract_feat(data['inputs']), data['data_samples'])
    decoder_deltas = list(deltas)  # one per decoder layer, in order
    assert len(decoder_deltas) == head.num_layers
    _, boxes, _ = head.forward_predictions(outs)
    handle.remove()
    loss = (boxes[-1] * torch.randn_like(boxes[-1])).sum()  # the last layer's boxes only
    grads = torch.autograd.grad(loss, decoder_deltas, allow_unused=True)
    norms = [0.0 if g is None else float(g.abs().sum()) for g in grads]
    assert norms[-2] > 0  # layer l-1's box prediction (through references[l])
    # the last layer's decoder delta only refines a reference no layer reads, and the
    # gradient goes no further back than one layer
    assert norms[-1] == 0 and norms[0] == 0


def test_eval_predictions_unchanged_in_form_and_value(tiny_model, make_batch):
    head, outs = _head_outputs(tiny_model, make_batch, train=False)
    num_q = head.num_queries
    assert outs.num_dn == 0
    assert outs.hidden_states.shape[:3] == (head.num_layers, 2, num_q)
    assert outs.references.shape == (head.num_layers + 1, 2, num_q, 4)
    logits, boxes, masks = head.forward_predictions(outs, last_only=True)
    assert len(boxes) == 1 and boxes[0].shape == (2, num_q, 4)
    assert logits[0].shape[:2] == (2, num_q) and masks[0].shape[:2] == (2, num_q)
    assert bool(((boxes[0] >= 0) & (boxes[0] <= 1)).all())
    # detaching changes gradients only: the values equal look-forward-once's, bit for bit
    once = outs._replace(references=outs.references.detach())
    _, boxes_once, _ = head.forward_predictions(once)
    _, boxes_all, _ = head.forward_predictions(outs)
    for a, b in zip(boxes_all, boxes_once):
        assert torch.equal(a, b)
    # layer l's box is the refined reference the decoder handed to layer l+1
    for lid in range(head.num_layers):
        torch.testing.assert_close(boxes_all[lid + 1], outs.references[lid + 1])
