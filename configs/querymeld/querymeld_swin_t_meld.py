# Query meld with an mmpretrain Swin-T backbone: any registered OpenMMLab backbone slots in by
# config. The paper uses Swin-B / Swin-L (section 4); swap `arch`, `in_channels` and the
# checkpoint for those. The text tower (CLIP ViT-B/16, 'openai') comes from querymeld_r50_meld.py.
# This config uses modules of mmdet (detector parts, pipelines), mmseg (ADE20KDataset,
# PhotoMetricDistortion) and mmpretrain (SwinTransformer) through their scope prefixes.
_base_ = ['./querymeld_r50_meld.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpretrain.SwinTransformer',
        arch='tiny',
        img_size=384,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        with_cp=False,
        pad_small_map=True,
        # ImageNet-1k weights of mmpretrain's Swin-T (its classifier checkpoint: backbone.*);
        # offline: model.backbone.init_cfg.checkpoint=/path/to/<that file>
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/mmclassification/v0/swin-transformer/'
            'swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth',
            prefix='backbone.')),
    head=dict(pixel_decoder=dict(in_channels=[96, 192, 384, 768])))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            backbone=dict(lr_mult=0.1),
            absolute_pos_embed=dict(decay_mult=0.0),
            relative_position_bias_table=dict(decay_mult=0.0))))
