# QueryMeldNet with a ResNet-50 image encoder (model only; paper sections 3.1-3.3).
# "The hyperparameters of the architecture and training follow Mask DINO": hidden 256, FFN 2048,
# 6 deformable encoder layers over 3 levels (1/8, 1/16, 1/32) + 1/4 mask features, 9 decoder
# layers, 100 learnable + 300 conditional queries, denoising with 100 queries and noise 0.4,
# 12544 sampled mask points, Mask DINO loss weights (class 4, mask 5, dice 5, box 5, giou 2).
embed_dims = 256
num_learnable_queries = 100
num_conditional_queries = 300
num_levels = 3
ffn_dims = 2048

model = dict(
    type='QueryMeldNet',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        pad_mask=True,
        mask_pad_value=0,
        pad_seg=False),
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='pytorch',
        # ImageNet weights: init_cfg=dict(type='Pretrained', checkpoint=<local .pth or
        # 'torchvision://resnet50'>)
        init_cfg=None),
    neck=None,
    head=dict(
        type='QueryMeldHead',
        embed_dims=embed_dims,
        num_learnable_queries=num_learnable_queries,
        num_conditional_queries=num_conditional_queries,
        pixel_decoder=dict(
            type='QueryMeldPixelDecoder',
            in_channels=[256, 512, 1024, 2048],
            strides=[4, 8, 16, 32],
            feat_channels=embed_dims,
            out_channels=embed_dims,
            num_outs=num_levels,
            norm_cfg=dict(type='GN', num_groups=32),
            act_cfg=dict(type='ReLU'),
            encoder=dict(
                num_layers=6,
                layer_cfg=dict(
                    self_attn_cfg=dict(
                        embed_dims=embed_dims, num_heads=8, num_levels=num_levels, num_points=4,
                        im2col_step=64, dropout=0.0, batch_first=True, norm_cfg=None,
                        init_cfg=None),
                    ffn_cfg=dict(
                        embed_dims=embed_dims, feedforward_channels=ffn_dims, num_fcs=2,
                        ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True)))),
            positional_encoding=dict(num_feats=embed_dims // 2, normalize=True)),
        decoder=dict(
            num_layers=9,
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=embed_dims, num_heads=8, attn_drop=0.0,
                                   proj_drop=0.0, batch_first=True),
                cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=8, num_levels=num_levels,
                                    num_points=4, dropout=0.0, batch_first=True),
                ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=ffn_dims, num_fcs=2,
                             ffn_drop=0.0, act_cfg=dict(type='ReLU', inplace=True)),
                # the query meld; alternatives: 'learnable_to_conditional',
                # 'conditional_to_learnable', 'none' (see DualQueryCrossAttention); one
                # attention module per direction (a shared one: 2.4 mask AP lower, issue 11)
                dual_attn_cfg=dict(mode='bidirectional', share_weights=False, num_heads=8,
                                   dropout=0.0))),
        text_encoder=dict(
            type='OpenCLIPTextEncoder',
            model_name='ViT-B-16',  # "CLIP-Base" (appendix A.2)
            pretrained=None,  # a local open_clip checkpoint or a pretrained tag, e.g. 'openai'
            freeze_tower=True),
        # query -> text projection, logit scale and focal-prior bias; query_dims / text_dims
        # come from embed_dims and the text encoder
        text_classifier=dict(type='QueryTextClassifier', prior_prob=0.01),
        criterion=dict(
            type='QueryMeldCriterion',
            # Mask DINO's matcher (the criterion's default assigner, see
            # mmquerymeld.models.losses.matching.DEFAULT_ASSIGNER): class (focal) 4, box L1 5,
            # GIoU 2, mask BCE 5, dice 5; box costs gated by box_valid, mask costs by mask_valid.
            # An ablation overrides it with assigner=dict(type='HungarianAssigner', ...).
            # The loss weights below are Mask DINO's as well.
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                          reduction='mean', loss_weight=4.0),
            loss_bbox=dict(type='L1Loss', reduction='mean', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', reduction='mean', loss_weight=2.0),
            loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, reduction='mean',
                           loss_weight=5.0),
            loss_dice=dict(type='DiceLoss', use_sigmoid=True, activate=True, reduction='mean',
                           naive_dice=True, eps=1.0, loss_weight=5.0),
            num_points=12544,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
            # Mask DINO: no box loss / box cost for semantic-task targets and panoptic stuff
            box_supervision='things'),
        # max_dn_targets: an image with more targets denoises a random subset of that many
        # (None: num_dn_queries), so crowded images (LVIS, Objects365) cost bounded memory
        denoising=dict(num_dn_queries=100, label_noise_ratio=0.2, box_noise_scale=0.4,
                       dn_see_matching=False, max_dn_targets=None),
        proposal_base_scale=0.05,
        mask_enhanced_box_init=False,
        initial_pred=True,
        share_box_head=True),
    # keyword arguments of mmquerymeld.models.heads.postprocessing per task; Mask DINO panoptic
    # inference: object mask threshold 0.25, overlap threshold 0.8; 100 instances per image.
    # sharpen_temperature: Mask DINO's score sharpening for semantic / panoptic, on as there
    # (PANO_TRANSFORM_EVAL=True, PANO_TEMPERATURE=0.06: softmax(sigmoid(logits) / 0.06) over the
    # image's texts; None turns it off). Detection keeps boxes only (box AP needs no masks;
    # with_masks=True adds the kept predictions' masks).
    test_cfg=dict(
        semantic=dict(sharpen_temperature=0.06),
        panoptic=dict(object_mask_thr=0.25, iou_thr=0.8, sharpen_temperature=0.06),
        instance=dict(max_per_image=100),
        detection=dict(max_per_image=100, with_masks=False)))
