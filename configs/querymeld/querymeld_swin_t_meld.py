# Query meld with an mmpretrain Swin-T backbone: any registered OpenMMLab backbone slots in by
# config. The paper uses Swin-B / Swin-L (section 4); swap `arch` and `in_channels` for those.
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
        # ImageNet weights: init_cfg=dict(type='Pretrained', checkpoint=<local .pth>,
        #                                 prefix='backbone.')
        init_cfg=None),
    head=dict(pixel_decoder=dict(in_channels=[96, 192, 384, 768])))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(
            backbone=dict(lr_mult=0.1),
            absolute_pos_embed=dict(decay_mult=0.0),
            relative_position_bias_table=dict(decay_mult=0.0))))
