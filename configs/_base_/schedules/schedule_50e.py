# Appendix A.2: AdamW, lr 2e-4 (segmentation encoder/decoder) and 2e-5 for the backbone,
# weight decay 0.05, 10 warm-up iterations, lr x0.1 at 0.9 and 0.95 of training, 50 epochs.
max_epochs = 50
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05, betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    # no weight decay on embeddings (Mask DINO; mmdet's Mask2Former configs exempt query_embed,
    # query_feat, level_embed): learnable query content and anchors, the pixel decoder's level
    # embeddings, and the text classifier's logit scale and bias (scalars that set the logit range
    # and the focal prior); norm weights and biases as before. Keys match parameter-name substrings.
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'learnable_content': dict(decay_mult=0.0),
            'learnable_anchors': dict(decay_mult=0.0),
            'level_encoding': dict(decay_mult=0.0),
            'text_classifier.logit_scale': dict(decay_mult=0.0),
            'text_classifier.logit_bias': dict(decay_mult=0.0),
        },
        norm_decay_mult=0.0))

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs,
         milestones=[int(max_epochs * 0.9), int(max_epochs * 0.95)], gamma=0.1),
]

# The paper trains with batch size 32 (section 4.1) and 128 (sections 4.2/4.3).
auto_scale_lr = dict(enable=False, base_batch_size=32)
