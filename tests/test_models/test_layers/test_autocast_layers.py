"""Layers under mixed precision: fp32 deformable attention and dtype-following denoising buffers."""
import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.registry import MODELS

from mmquerymeld.models.layers import (Fp32MultiScaleDeformableAttention,
                                       OpenVocabDenoisingGenerator, QueryMeldDecoderLayer)

pytestmark = pytest.mark.usefixtures('single_thread')

ATTN = dict(embed_dims=32, num_heads=4, num_levels=2, num_points=2, dropout=0.0,
            batch_first=True)
SHAPES = torch.tensor([[6, 8], [3, 4]])


def _attn_inputs(dtype):
    g = torch.Generator().manual_seed(1)
    num_value = int(SHAPES.prod(1).sum())
    query = torch.randn(2, 5, 32, generator=g).to(dtype)
    value = torch.randn(2, num_value, 32, generator=g).to(dtype)
    pos = torch.randn(2, 5, 32, generator=g).to(dtype)
    ref = torch.rand(2, 5, 2, 4, generator=g).to(dtype) * 0.5 + 0.25
    start = torch.cat([SHAPES.new_zeros(1), SHAPES.prod(1).cumsum(0)[:-1]])
    return dict(query=query, value=value, query_pos=pos, reference_points=ref,
                spatial_shapes=SHAPES, level_start_index=start)


def _pair():
    torch.manual_seed(0)
    fp32 = Fp32MultiScaleDeformableAttention(**ATTN)
    # non-trivial offsets / attention weights (mmcv initialises both projections to zero)
    for lin in (fp32.sampling_offsets, fp32.attention_weights):
        torch.nn.init.normal_(lin.weight, std=0.2)
    plain = MultiScaleDeformableAttention(**ATTN)
    plain.load_state_dict(fp32.state_dict())  # same parameters, same keys
    return fp32, plain


def test_fp32_deform_attn_equals_mmcv_outside_autocast():
    fp32, plain = _pair()
    inputs = _attn_inputs(torch.float32)
    torch.testing.assert_close(fp32(**inputs), plain(**inputs), rtol=0, atol=0)


def test_fp32_deform_attn_computes_in_fp32_under_bf16_autocast():
    fp32, plain = _pair()
    inputs_bf16 = _attn_inputs(torch.bfloat16)
    # the reference: mmcv's module on the same (bf16-rounded) inputs, in fp32, no autocast
    expected = plain(**{k: v.float() if v.is_floating_point() else v
                        for k, v in inputs_bf16.items()})
    seen = []
    hook = fp32.value_proj.register_forward_hook(lambda m, a, o: seen.append((a[0].dtype,
                                                                              o.dtype)))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = fp32(**inputs_bf16)
        with_mmcv = plain(**inputs_bf16)
    hook.remove()
    assert seen == [(torch.float32, torch.float32)]  # inputs cast, autocast off inside
    assert out.dtype == torch.bfloat16  # returned in the query's dtype
    torch.testing.assert_close(out.float(), expected.to(torch.bfloat16).float(), rtol=0,
                               atol=0)
    # mmcv's own module computes its projections in bf16 there: a visibly different result
    assert with_mmcv.dtype == torch.bfloat16
    assert (with_mmcv.float() - expected).abs().max() > (out.float() - expected).abs().max()


def test_pixel_decoder_and_meld_decoder_use_the_fp32_attention():
    cfg = dict(
        type='QueryMeldPixelDecoder', in_channels=[8, 16, 32, 64], strides=[4, 8, 16, 32],
        feat_channels=32, out_channels=32, num_outs=2, norm_cfg=dict(type='GN', num_groups=8),
        encoder=dict(num_layers=2, layer_cfg=dict(
            self_attn_cfg=dict(ATTN),
            ffn_cfg=dict(embed_dims=32, feedforward_channels=64, num_fcs=2, ffn_drop=0.0))),
        positional_encoding=dict(num_feats=16, normalize=True))
    pixel_decoder = MODELS.build(cfg)
    assert [type(layer.self_attn) for layer in pixel_decoder.encoder.layers] == \
        [Fp32MultiScaleDeformableAttention] * 2
    layer = QueryMeldDecoderLayer(
        self_attn_cfg=dict(embed_dims=32, num_heads=4, batch_first=True),
        cross_attn_cfg=dict(ATTN), ffn_cfg=dict(embed_dims=32, feedforward_channels=64))
    assert type(layer.cross_attn) is Fp32MultiScaleDeformableAttention
    assert layer.cross_attn.num_levels == 2 and layer.cross_attn.num_points == 2


def test_denoising_buffers_follow_the_written_dtype_under_autocast():
    torch.manual_seed(0)
    gen = OpenVocabDenoisingGenerator(text_dims=8, embed_dims=16, num_dn_queries=6)
    text_embeds = torch.randn(2, 4, 8)
    text_valid = torch.ones(2, 4, dtype=torch.bool)
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    boxes = [torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]]),
             torch.tensor([[0.4, 0.4, 0.3, 0.2]])]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        dn = gen(labels, boxes, text_embeds, text_valid, num_matching=5)
    assert dn['content'].dtype == torch.bfloat16  # the label projection's output dtype
    assert dn['anchors'].dtype == torch.float32  # noised ground-truth boxes keep fp32
    assert dn['content'].shape == (2, 6, 16) and dn['anchors'].shape == (2, 6, 4)
    # outside autocast everything stays fp32
    dn = gen(labels, boxes, text_embeds, text_valid, num_matching=5)
    assert dn['content'].dtype == torch.float32 and dn['anchors'].dtype == torch.float32
