"""Fixtures of the head tests."""
import pytest
import torch.nn.functional as F


def _two_step_reference(x, pad, img, out):
    """Today's frame conversion (Mask2Former's): all masks to the padded frame, crop, then to
    the output size (``F.interpolate``, bilinear, ``align_corners=False``)."""
    y = F.interpolate(x[None], size=pad, mode='bilinear', align_corners=False)[0]
    y = y[:, :img[0], :img[1]]
    if tuple(out) != tuple(img):
        y = F.interpolate(y[None], size=out, mode='bilinear', align_corners=False)[0]
    return y


@pytest.fixture(scope='session')
def two_step_reference():
    """``f(x [N, h, w], pad, img, out) -> [N, *out]``: the full-resolution reference upsample."""
    return _two_step_reference
