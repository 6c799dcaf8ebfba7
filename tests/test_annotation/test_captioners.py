"""Context crops, the BLIP region captioner (offline from a directory) and the CLIP scorer."""
import numpy as np
import pytest
import torch

from caption_test_models import SPECIALS, WORDS, write_qm_tiny_clip, write_tiny_blip
from mmquerymeld.annotation.crops import context_box, crop_boxes

pytest.importorskip('transformers')


# ----------------------------------------------------------------------------------- crops
def test_context_box_adds_margin_of_box_size_and_clips():
    # 20 x 10 box at (10, 10): half its width left/right, half its height above/below
    assert context_box([10, 10, 20, 10], 64, 64, margin=0.5) == (0, 5, 40, 25)
    assert context_box([10, 10, 20, 10], 64, 64, margin=0.0) == (10, 10, 30, 20)
    # clipped to the image; a box partly outside keeps its inside part
    assert context_box([50, 40, 20, 30], 64, 60, margin=0.2) == (46, 34, 64, 60)
    assert context_box([-5, -5, 10, 10], 64, 64, margin=0.0) == (0, 0, 5, 5)
    # a sub-pixel box still yields one pixel
    x0, y0, x1, y1 = context_box([63.6, 0.2, 0.3, 0.3], 64, 64, margin=0.0)
    assert x1 - x0 >= 1 and y1 - y0 >= 1 and x1 <= 64
    with pytest.raises(ValueError, match='overlap'):
        context_box([70, 0, 5, 5], 64, 64)
    with pytest.raises(ValueError, match='margin'):
        context_box([1, 1, 5, 5], 64, 64, margin=-0.1)


def test_crop_boxes_are_the_windows_of_the_image():
    img = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)
    crops, windows = crop_boxes(img, [[8, 8, 10, 20], [30, 0, 34, 48]], margin=0.5)
    assert windows == [(3, 0, 23, 38), (13, 0, 64, 48)]
    for crop, (x0, y0, x1, y1) in zip(crops, windows):
        assert crop.shape == (y1 - y0, x1 - x0, 3)
        np.testing.assert_array_equal(crop, img[y0:y1, x0:x1])


# ------------------------------------------------------------------------------- captioner
@pytest.fixture(scope='module')
def blip_dir(tmp_path_factory):
    return write_tiny_blip(str(tmp_path_factory.mktemp('blip')))


def _crops():
    rng = np.random.default_rng(0)
    return [np.zeros((20, 20, 3), np.uint8), np.full((20, 20, 3), 255, np.uint8),
            rng.integers(0, 255, (30, 10, 3)).astype(np.uint8),
            np.tile(np.array([255, 0, 0], np.uint8), (1, 1, 1)),  # a 1-pixel crop
            np.tile(np.array([0, 0, 255], np.uint8), (3, 7, 1))]  # 3 rows: not read as CHW


def test_blip_from_directory_five_sampled_captions(blip_dir):
    from mmquerymeld.annotation.captioners import CAPTIONERS, BlipCaptioner, build_captioner
    assert CAPTIONERS.get('blip') is BlipCaptioner
    cap = build_captioner(dict(type='blip', model_dir=blip_dir, max_new_tokens=6, top_p=0.8,
                               temperature=0.7))
    settings = cap.settings
    assert settings['num_return_sequences'] == 5 and settings['do_sample'] is True
    assert (settings['top_p'], settings['temperature']) == (0.8, 0.7)
    assert settings['model_dir'] == blip_dir and settings['max_new_tokens'] == 6
    crops = _crops()
    state = torch.get_rng_state()
    out = cap.caption(crops, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left as it was
    assert len(out) == len(crops) and all(len(c) == 5 for c in out)
    words = set(WORDS)
    for caps in out:
        for c in caps:
            assert set(c.split()) <= words  # decoded, special tokens removed
            assert not set(c.split()) & set(SPECIALS)
    assert cap.caption(crops, seed=3) == out  # seeded
    assert cap.caption(crops, seed=4) != out  # sampled


def test_blip_batches_keep_each_crops_captions(blip_dir):
    """Beam decoding is deterministic: captions of a batch equal captions of each crop alone,
    whatever the batch size (generate returns num_return_sequences rows per crop, in order)."""
    from mmquerymeld.annotation.captioners import build_captioner
    cap = build_captioner(dict(type='BlipCaptioner', model_dir=blip_dir, decoding='beam',
                               num_beams=5, max_new_tokens=6, batch_size=8))
    assert cap.settings['do_sample'] is False and cap.settings['num_beams'] == 5
    crops = _crops()
    batched = cap.caption(crops)
    alone = [cap.caption([c])[0] for c in crops]
    assert batched == alone
    assert len({tuple(c) for c in batched}) >= 2  # the crops do get different captions
    cap.batch_size = 2
    assert cap.caption(crops) == batched


def test_blip_prompt_is_removed(blip_dir):
    from mmquerymeld.annotation.captioners import build_captioner
    cap = build_captioner(dict(type='blip', model_dir=blip_dir, decoding='beam',
                               max_new_tokens=4, prompt='a picture of'))
    assert cap.settings['prompt'] == 'a picture of'
    for caps in cap.caption(_crops()[:2]):
        assert all(not c.startswith('a picture of') for c in caps)


def test_blip_bad_settings(blip_dir, tmp_path):
    from mmquerymeld.annotation.captioners import build_captioner
    with pytest.raises(FileNotFoundError, match='config.json'):
        build_captioner(dict(type='blip', model_dir=str(tmp_path)))
    with pytest.raises(ValueError, match='num_beams'):
        build_captioner(dict(type='blip', model_dir=blip_dir, decoding='beam', num_beams=3))
    with pytest.raises(ValueError, match='top_p'):
        build_captioner(dict(type='blip', model_dir=blip_dir, top_p=0.0))


# ------------------------------------------------------------------------------ CLIP scorer
@pytest.fixture(scope='module')
def clip_file(tmp_path_factory):
    return write_qm_tiny_clip(str(tmp_path_factory.mktemp('clip') / 'qm_tiny.pt'))


def test_clip_score_is_cosine_of_open_clip_embeddings(clip_file):
    import open_clip
    from PIL import Image

    from mmquerymeld.annotation.clip_filter import ClipScorer
    scorer = ClipScorer('QM-Tiny', clip_file, batch_size=2)
    assert scorer.settings['pretrained'] == clip_file
    crops = _crops()[:3]
    caps = [['a red circle', 'a blue square'], [], ['the star on the left', 'a', 'cross']]
    scores = scorer.score(crops, caps)
    assert [len(s) for s in scores] == [2, 0, 3]
    # reference: the checkpoint loaded by open_clip itself, one pair at a time
    model, _, pre = open_clip.create_model_and_transforms('QM-Tiny', pretrained=clip_file)
    model.eval()
    tok = open_clip.get_tokenizer('QM-Tiny')
    with torch.no_grad():
        for crop, cs, ss in zip(crops, caps, scores):
            img = model.encode_image(pre(Image.fromarray(crop))[None], normalize=True)
            for c, s in zip(cs, ss):
                txt = model.encode_text(tok([c]), normalize=True)
                assert abs(float((img * txt).sum()) - s) < 1e-4
    flat = [s for ss in scores for s in ss]
    assert len(set(flat)) == len(flat)  # pairs get their own scores


def test_clip_scorer_refuses_a_checkpoint_of_another_architecture(tmp_path):
    from mmquerymeld.annotation.clip_filter import ClipScorer
    path = str(tmp_path / 'text_only.pt')
    torch.save({'token_embedding.weight': torch.zeros(3, 4)}, path)
    with pytest.raises(RuntimeError, match='does not fit'):
        ClipScorer('QM-Tiny', path)
    with pytest.raises(FileNotFoundError):
        ClipScorer('QM-Tiny', str(tmp_path / 'missing.pt'))
