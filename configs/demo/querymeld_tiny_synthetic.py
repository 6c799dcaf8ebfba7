# The main job: a tiny QueryMeldNet trained jointly on every task of the synthetic world
# (tools/dataset_converters/make_synthetic_world.py --out data/synthetic), then evaluated per
# source with the task's metric; test pictures go to <work_dir>/<timestamp>/vis/<source>/.
# Runs on 2 CPU cores in minutes: bash tools/run_demo.sh
# No pretrained weights, on purpose (no network, minutes of CPU): the ResNet-18 and the frozen
# 'QM-Tiny' text tower are random, so its text embeddings only tell the synthetic world's names
# apart (a warning at start-up says so); it demonstrates the pipeline, not open-vocabulary
# recognition. The paper configs (configs/querymeld/) start from ImageNet and CLIP weights.
_base_ = [
    '../_base_/models/querymeld_tiny.py',
    '../_base_/datasets/synthetic_world.py',
    '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_iter.py',
]

max_iters = 2000

# A tiny model trained for minutes is less confident than Mask DINO's 0.25 panoptic object
# threshold assumes (its thing scores sit near 0.2), so the demo keeps segments above 0.1.
model = dict(test_cfg=dict(panoptic=dict(object_mask_thr=0.1)))
# no validation pass during training: tools/run_demo.sh evaluates (and paints) the final model
# ResumableIterBasedTrainLoop: an interrupted run resumes exactly, without replaying its data
train_cfg = dict(type='ResumableIterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters,
                 val_begin=max_iters + 1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# appendix A.2 as the base schedule has it (AdamW, weight decay 0.05 except on norms, the learnable
# queries, the level embeddings and the classifier's logit scale / bias, backbone lr x0.1, step
# decay at 90% / 95%), with a larger base lr, a looser gradient clip and a longer warm-up for the
# short CPU schedule
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.9), int(max_iters * 0.95)], gamma=0.1),
]

train_dataloader = dict(batch_size=2, num_workers=1, persistent_workers=True)
val_dataloader = dict(num_workers=1)
test_dataloader = val_dataloader

# a list: mmengine reads a top-level dict with a `metrics` key as an Evaluator config
val_evaluator = [dict(
    type='MultiSourceMetric',
    metrics=dict(
        syn_coco_panoptic=dict(type='PanopticQualityMetric'),
        syn_coco_instance=dict(
            type='OpenVocabCocoMetric',
            ann_file='data/synthetic/coco/annotations/instances_val2017.json',
            metric=['bbox', 'segm']),
        syn_ade_semantic=dict(type='OpenVocabIoUMetric'),
        syn_refcoco=dict(type='ReferringMetric'),
        syn_duts=dict(type='ForegroundMetric'),
        syn_o365_boxes=dict(
            type='OpenVocabCocoMetric',
            ann_file='data/synthetic/detection/annotations/boxes_val.json', metric='bbox')))]
test_evaluator = val_evaluator

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='AtomicCheckpointHook', interval=500, by_epoch=False, max_keep_ckpts=2),
    # the tiny model's instance scores are low (~0.2): draw instances above 0.15
    visualization=dict(type='QueryMeldVisualizationHook', draw=False, max_per_source=6,
                       score_thr=0.15))
visualizer = dict(type='QueryMeldLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')],
                  name='visualizer')
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
work_dir = './work_dirs/querymeld_tiny_synthetic'
infer_img_scale = (128, 128)  # tools/infer.py / QueryMeldInferencer resize (the training size)
