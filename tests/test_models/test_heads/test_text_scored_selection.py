"""The head's text-scored selection of conditional queries, tested through QueryMeldHead.

Paper 3.2 / Figure 3 (b): encoder proposals are scored against the sample's *valid* text
embeddings and the top-k become the conditional queries. These tests drive the head's own
scoring (no hand-written score function): padded vocabulary entries must not drive selection,
and the text embeddings must.
"""
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture
def setup(tiny_model, make_batch):
    """Tiny model in eval mode and one image twice in a batch, with a 2-text vocabulary
    (padded to 4) and a 4-text vocabulary."""
    model = tiny_model()
    model.eval()
    batch = make_batch(tasks=('referring', 'panoptic'), seeds=[0, 0])  # the same image twice
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        x = model.extract_feat(data['inputs'])
    return model.head, x, data['data_samples']


def _run(head, x, samples, monkeypatch, edit=None):
    """Run the head; ``edit(text_embeds, text_valid)`` may rewrite the encoded vocabularies.

    Returns:
        tuple: ``topk_index`` ``[B, Nc]`` of the selected proposals and the proposal features
        ``[B, S, C]`` that were scored.
    """
    captured = {}
    encode = type(head).encode_texts

    def encode_texts(samples_):
        embeds, valid = encode(head, samples_)
        return edit(embeds.clone(), valid.clone()) if edit is not None else (embeds, valid)

    selector = head.query_generator.query_selector
    hooks = [
        selector.register_forward_hook(lambda m, i, o: captured.update(index=o['topk_index'])),
        selector.enc_output_norm.register_forward_hook(
            lambda m, i, o: captured.update(feats=o.detach()))
    ]
    monkeypatch.setattr(head, 'encode_texts', encode_texts)
    try:
        with torch.no_grad():
            head(x, samples)
    finally:
        for hook in hooks:
            hook.remove()
        monkeypatch.undo()
    return captured['index'], captured['feats']


def test_padded_vocabulary_entries_do_not_drive_selection(setup, monkeypatch):
    head, x, samples = setup
    reference, _ = _run(head, x, samples, monkeypatch)
    assert samples[0].metainfo['texts'] and len(samples[0].metainfo['texts']) == 2

    def garbage(embeds, valid, mark_valid=False):
        """Image 0's padded rows: the negated embeddings of its two texts (unit norm), which
        score highest exactly where its real texts score lowest."""
        assert valid[0].tolist() == [True, True, False, False]
        embeds[0, 2:] = -embeds[0, :2]
        if mark_valid:
            valid[0, 2:] = True
        return embeds, valid

    padded, _ = _run(head, x, samples, monkeypatch, garbage)
    # with text_valid respected the padded rows' content changes nothing
    assert torch.equal(padded, reference)
    # the same rows read as real texts would change the selection: the check above is sharp
    read, _ = _run(head, x, samples, monkeypatch, lambda e, v: garbage(e, v, mark_valid=True))
    assert not torch.equal(read[0].sort().values, reference[0].sort().values)
    assert torch.equal(read[1], reference[1])  # image 1 has no padding


def test_text_embeddings_decide_which_proposals_are_selected(setup, monkeypatch):
    head, x, samples = setup
    reference, feats = _run(head, x, samples, monkeypatch)
    # the same image with another vocabulary (image 1: 4 texts) selects other proposals
    assert torch.equal(feats[0], feats[1])
    assert set(reference[0].tolist()) != set(reference[1].tolist())

    # a text that points exactly at a proposal the vocabulary left out gets it selected
    num_props = feats.shape[1]
    left_out = [s for s in range(num_props) if s not in set(reference[0].tolist())]
    target = left_out[len(left_out) // 2]
    classifier = head.text_classifier
    with torch.no_grad():
        direction = F.normalize(classifier.query_proj(feats[0, target]), dim=-1)

    def point_at_target(embeds, valid):
        embeds[0, 1] = direction.to(embeds.dtype)
        return embeds, valid

    chosen, _ = _run(head, x, samples, monkeypatch, point_at_target)
    assert target in chosen[0].tolist()
    assert int(chosen[0, 0]) == target  # the best possible score: cosine 1 with the text
    assert torch.equal(chosen[1], reference[1])


def test_proposal_scores_are_chunked_and_equal_the_unchunked_max(tiny_model):
    """text_scores never forms the whole [B, S, K] logits (it grows with the vocabulary x the
    proposals of the input), and its chunks give the same scores."""
    from torch.utils._pytree import tree_flatten
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    self.numel = max(self.numel, t.numel())
            return out

    head = tiny_model().head.eval()
    g = torch.Generator().manual_seed(0)
    b, s, k = 2, 600, 50
    feats = torch.randn(b, s, head.text_classifier.query_dims, generator=g)
    texts = F.normalize(torch.randn(b, k, head.text_classifier.text_dims, generator=g), dim=-1)
    valid = torch.ones(b, k, dtype=torch.bool)
    valid[1, 40:] = False
    with torch.no_grad():
        full = head.text_classifier(feats, texts, valid).masked_fill(
            ~valid[:, None], float('-inf')).max(-1).values
        with Largest() as probe:
            chunked = head.text_scores(feats, texts, valid, max_elements=b * k * 64)
    torch.testing.assert_close(chunked, full)
    assert probe.numel <= b * 64 * max(k, head.text_classifier.text_dims), probe.numel
    assert probe.numel < b * s * k
