# DDP with a task split (issue 9, item 9): the tiny demo model on two sources of the synthetic
# world, rank 0 only box-only detection samples (no synthetic masks: mask_valid False for every
# target), rank 1 only referring samples (RankSourceSampler from tests/data/ddp_task_split.py).
# Run by tests/test_tools/test_ddp_task_split.py from a folder holding data/synthetic/.
_base_ = ['../../../configs/demo/querymeld_tiny_synthetic.py']

custom_imports = dict(imports=['mmquerymeld', 'ddp_task_split'], allow_failed_imports=False)

box_only_train = dict(
    name='syn_o365_boxes', task='detection', ratio=1.0,
    pipeline={{_base_.syn_detection_train_pipeline}},
    dataset=dict(type='BoxCaptionDataset', data_root={{_base_.data_root}},
                 ann_file='detection/annotations/boxes_train.json',
                 data_prefix=dict(img='detection/images/train/'),
                 filter_cfg=dict(filter_empty_gt=True)))
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(_delete_=True, type='RankSourceSampler', seed=0),
    dataset=dict(type='MultiSourceDataset',
                 sources=[box_only_train, {{_base_.syn_referring_train}}]))

max_iters = 3
train_cfg = dict(max_iters=max_iters, val_interval=max_iters, val_begin=max_iters + 1)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=max_iters)]
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=max_iters, max_keep_ckpts=1),
                     visualization=dict(draw=False))
custom_hooks = [dict(type='TaskSplitLogHook')]
