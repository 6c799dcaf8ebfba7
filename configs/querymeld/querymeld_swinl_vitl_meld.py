# The paper's full configuration (Table 10, 286M parameters; section 4, appendix A.2): the query
# meld (100 learnable + 300 conditional queries, querymeld_r50_meld.py) with a Swin-L image
# encoder (ImageNet-22k, 384 px, window 12) and the CLIP ViT-L/14 text encoder; the Swin wiring
# (mmpretrain backbone, layer-wise lr and decay exemptions) comes from querymeld_swin_t_meld.py.
# Parameter count: python tools/analysis/count_params.py configs/querymeld/querymeld_swinl_vitl_meld.py
# Pretrained starts: mmpretrain's Swin-L (its classifier checkpoint: backbone.*) and OpenAI's CLIP
# ViT-L/14 text tower (open_clip tag 'openai'; those weights use QuickGELU). Offline:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/swin-large_in21k-pre-3rdparty_in1k-384.pth \
#                 model.head.text_encoder.pretrained=/path/to/ViT-L-14.pt
_base_ = ['./querymeld_swin_t_meld.py']

model = dict(
    backbone=dict(
        arch='large',
        window_size=12,
        init_cfg=dict(
            checkpoint='https://download.openmmlab.com/mmclassification/v0/swin-transformer/'
            'convert/swin-large_3rdparty_in21k-384px.pth')),
    head=dict(
        pixel_decoder=dict(in_channels=[192, 384, 768, 1536]),
        text_encoder=dict(model_name='ViT-L-14-quickgelu', pretrained='openai')))
