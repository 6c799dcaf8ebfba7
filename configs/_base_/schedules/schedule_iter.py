# Iteration-based variant of the appendix A.2 schedule (for multi-source training with a ratio
# sampler, where an "epoch" has no natural meaning): the same optimizer, warm-up and step decay at
# 90% / 95% of the iterations.
_base_ = './schedule_50e.py'

max_iters = 368750
# ResumableIterBasedTrainLoop (mmquerymeld/engine/loops.py): resumes restore the sampler position
# instead of replaying every finished batch
train_cfg = dict(_delete_=True, type='ResumableIterBasedTrainLoop', max_iters=max_iters,
                 val_interval=5000)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.9), int(max_iters * 0.95)], gamma=0.1),
]
