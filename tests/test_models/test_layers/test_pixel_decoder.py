"""Tests of the multi-scale deformable pixel decoder."""
import pytest
import torch
from mmdet.registry import MODELS

import mmquerymeld.models  # noqa: F401  (registers QueryMeldPixelDecoder)

pytestmark = pytest.mark.usefixtures('single_thread')


def _cfg(num_outs=3):
    return dict(
        type='QueryMeldPixelDecoder', in_channels=[8, 16, 32, 64], strides=[4, 8, 16, 32],
        feat_channels=32, out_channels=32, num_outs=num_outs,
        norm_cfg=dict(type='GN', num_groups=8),
        encoder=dict(num_layers=1, layer_cfg=dict(
            self_attn_cfg=dict(embed_dims=32, num_heads=4, num_levels=3, num_points=2,
                               dropout=0.0, batch_first=True),
            ffn_cfg=dict(embed_dims=32, feedforward_channels=64, num_fcs=2, ffn_drop=0.0))),
        positional_encoding=dict(num_feats=16, normalize=True))


def test_pixel_decoder_outputs():
    torch.manual_seed(0)
    dec = MODELS.build(_cfg())
    dec.init_weights()
    feats = [torch.randn(2, c, 64 // s, 96 // s) for c, s in zip([8, 16, 32, 64], [4, 8, 16, 32])]
    out = dec(feats)
    assert out['mask_features'].shape == (2, 32, 16, 24)  # 1/4 resolution
    assert out['spatial_shapes'].tolist() == [[2, 3], [4, 6], [8, 12]]  # 1/32, 1/16, 1/8
    assert out['level_start_index'].tolist() == [0, 6, 30]
    assert out['memory'].shape == (2, 6 + 24 + 96, 32)
    ms = out['multi_scale_feats']
    torch.testing.assert_close(out['memory'][:, 6:30], ms[1].flatten(2).transpose(1, 2))
    # the mask features see the encoder: changing the coarsest input changes them
    feats2 = [f.clone() for f in feats]
    feats2[3] += 1.0
    assert not torch.allclose(dec(feats2)['mask_features'], out['mask_features'])


def test_pixel_decoder_bad_inputs():
    with pytest.raises(ValueError, match='num_outs'):
        MODELS.build(_cfg(num_outs=4))
    dec = MODELS.build(_cfg())
    with pytest.raises(ValueError, match='feature levels'):
        dec([torch.randn(1, 16, 8, 8)])
