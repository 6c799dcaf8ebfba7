# The paper's full configuration (Table 10, 286M parameters; section 4, appendix A.2): the query
# meld (100 learnable + 300 conditional queries, querymeld_r50_meld.py) with a Swin-L image
# encoder (ImageNet-22k, 384 px, window 12) and the CLIP ViT-L/14 text encoder.
# Parameter count: python tools/analysis/count_params.py configs/querymeld/querymeld_swinl_vitl_meld.py
# Pretrained starts: mmpretrain's Swin-L (its classifier checkpoint: backbone.*) and OpenAI's CLIP
# ViT-L/14 text tower (open_clip tag 'openai'; those weights use QuickGELU). Offline:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/swin-large_in21k-pre-3rdparty_in1k-384.pth \
#                 model.head.text_encoder.pretrained=/path/to/ViT-L-14.pt
_base_ = ['./querymeld_r50_meld.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='large',
        img_size=384,
        window_size=12,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        with_cp=False,
        pad_small_map=True,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/swin-transformer/'
            'convert/swin-large_3rdparty_in21k-384px.pth',
            prefix='backbone.')),
    head=dict(
        pixel_decoder=dict(in_channels=[192, 384, 768, 1536]),
        text_encoder=dict(model_name='ViT-L-14-quickgelu', pretrained='openai')))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            backbone=dict(lr_mult=0.1),
            absolute_pos_embed=dict(decay_mult=0.0),
            relative_position_bias_table=dict(decay_mult=0.0))))
