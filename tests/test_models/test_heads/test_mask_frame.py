"""Tests of MaskFrame: the one upsampling path equals the two-step bilinear frame conversion."""
import pytest
import torch

from mmquerymeld.models.heads.mask_frame import MaskFrame

# (low, padded batch frame, img_shape, out_shape): padding + upscale, odd sizes + downscale,
# no padding and no rescale (crop only), identity
GEOMETRIES = [((16, 16), (64, 64), (48, 64), (96, 128)),
              ((25, 19), (100, 76), (97, 70), (333, 251)),
              ((32, 32), (128, 128), (128, 100), (40, 31)),
              ((8, 8), (32, 32), (30, 27), (30, 27)),
              ((8, 8), (8, 8), (8, 8), (8, 8))]


@pytest.mark.parametrize('low,pad,img,out', GEOMETRIES)
def test_upsample_and_row_bands_equal_two_step_interpolation(two_step_reference, low, pad,
                                                             img, out):
    torch.manual_seed(0)
    x = torch.randn(5, *low) * 8
    ref = two_step_reference(x, pad, img, out)
    frame = MaskFrame(low, pad, img, out)
    full = frame.upsample(x)
    assert full.shape == (5, *out) and full.dtype == x.dtype
    # composed weights in float64, cast once: float32 rounding of logits up to ~30 in size
    torch.testing.assert_close(full, ref, atol=1e-4, rtol=0)
    # any band of rows, any subset of masks: the same values as the full upsample
    small = MaskFrame(low, pad, img, out, max_elements=2 * out[1] * 3)
    bands = list(small.row_bands(2))
    assert len(bands) == -(-out[0] // 3) and all(y1 - y0 <= 3 for y0, y1 in bands)
    banded = torch.cat([small.upsample(x[1:3], rows) for rows in bands], 1)
    assert torch.equal(banded, full[1:3])


def test_from_meta_frames_and_budgets():
    meta = dict(batch_input_shape=(64, 64), img_shape=(48, 64), ori_shape=(96, 128))
    assert MaskFrame.from_meta((16, 16), meta, rescale=True).out_shape == (96, 128)
    assert MaskFrame.from_meta((16, 16), meta, rescale=False).out_shape == (48, 64)
    frame = MaskFrame.from_meta((16, 16), meta, max_elements=96 * 128 * 3)
    assert [(s.start, s.stop) for s in frame.query_chunks(7)] == [(0, 3), (3, 6), (6, 7)]
    with pytest.raises(ValueError, match="ori_shape"):
        MaskFrame.from_meta((16, 16), dict(batch_input_shape=(64, 64), img_shape=(48, 64)))
    with pytest.raises(ValueError, match='inside the padded'):
        MaskFrame((16, 16), (64, 64), (65, 64), (65, 64))
    with pytest.raises(ValueError, match=r'\[N, 16, 16\]'):
        MaskFrame((16, 16), (64, 64), (64, 64), (64, 64)).upsample(torch.zeros(2, 8, 8))
