# Runtime shared by every mmquerymeld config.
default_scope = 'mmdet'
custom_imports = dict(imports=['mmquerymeld'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # kill-safe checkpoints: temporary file + rename, last_checkpoint after the file is complete
    checkpoint=dict(type='AtomicCheckpointHook', interval=5000, by_epoch=False, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='DetVisualizationHook'),
    # checkpoints stay loadable by torch.load's weights_only default (mmquerymeld/engine/hooks)
    weights_only_checkpoint=dict(type='WeightsOnlyCheckpointHook'),
    # RNG states + sampler position in every checkpoint: exact resumes (ResumableIterBasedTrainLoop)
    train_state=dict(type='TrainStateHook'),
    # a NaN / Inf loss skips the step (QueryMeldNet.train_step); N in a row stop the run
    nonfinite_loss=dict(type='NonFiniteLossHook', max_consecutive_nonfinite=5))

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo (and CPU-friendly DDP) when no GPU is visible
    dist_cfg=dict(backend='nccl'))

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='DetLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)

log_level = 'INFO'
load_from = None
resume = False
