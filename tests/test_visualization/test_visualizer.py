"""QueryMeldLocalVisualizer / QueryMeldVisualizationHook: per-sample texts, every task, empty
predictions, one folder per source."""
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

import mmquerymeld  # noqa: F401  (registration)
from mmquerymeld.utils import TASKS

H, W = 32, 40


@pytest.fixture(scope='module')
def visualizer():
    init_default_scope('mmdet')
    from mmdet.registry import VISUALIZERS
    return VISUALIZERS.build(dict(type='QueryMeldLocalVisualizer', name='qm_vis_test'))


def _sample(task, texts, num_pred=0, num_gt=0):
    sample = DetDataSample(metainfo=dict(task=task, texts=texts, img_shape=(H, W),
                                         ori_shape=(H, W), source='src', img_path='x.png'))
    masks = torch.zeros(num_pred, H, W, dtype=torch.bool)
    masks[:, 8:24, 10:30] = True
    sample.pred_instances = InstanceData(
        masks=masks, bboxes=torch.tensor([[10., 8., 30., 24.]]).repeat(num_pred, 1),
        scores=torch.full((num_pred, ), 0.9), labels=torch.arange(num_pred),
        query_types=torch.zeros(num_pred, dtype=torch.long))
    sample.gt_instances = InstanceData(
        masks=torch.zeros(num_gt, H, W, dtype=torch.bool), bboxes=torch.zeros(num_gt, 4),
        labels=torch.zeros(num_gt, dtype=torch.long),
        mask_valid=torch.ones(num_gt, dtype=torch.bool))
    if task == 'panoptic':
        pan = torch.full((1, H, W), len(texts), dtype=torch.long)  # all void
        if num_pred:
            pan[0, 8:24, 10:30] = 0 + 1 * 1000
        sample.pred_panoptic_seg = PixelData(sem_seg=pan)
    if task in ('semantic', 'foreground'):
        seg = torch.zeros((1, H, W), dtype=torch.long)
        if num_pred:
            seg[0, 8:24, 10:30] = 1 if task == 'foreground' else 0
        sample.pred_sem_seg = PixelData(sem_seg=seg)
    return sample


@pytest.mark.parametrize('task', TASKS)
@pytest.mark.parametrize('texts', [['a thing'], []])
def test_empty_predictions_do_not_crash(visualizer, tmp_path, task, texts):
    """No instances / all-void panoptic / empty vocabulary: an undrawn prediction panel."""
    img = np.full((H, W, 3), 100, np.uint8)
    out = str(tmp_path / f'{task}.png')
    visualizer.add_datasample('x', img, _sample(task, texts), out_file=out)
    drawn = cv2.imread(out)
    assert drawn is not None and drawn.shape == (H, 2 * W, 3)
    if task != 'semantic' or not texts:
        # nothing to paint on either side (semantic with a vocabulary paints text 0 everywhere)
        assert (drawn == 100).all()


@pytest.mark.parametrize('task', TASKS)
def test_predictions_are_painted_inside_the_region(visualizer, task):
    img = np.full((H, W, 3), 100, np.uint8)
    visualizer.add_datasample('x', img, _sample(task, ['a thing', 'another'], num_pred=1),
                              draw_gt=False, pred_score_thr=0.3)
    drawn = visualizer.get_image()
    assert drawn.shape == (H, W, 3)
    assert (drawn[12:20, 14:26] != 100).any(), 'the predicted region is not painted'
    if task in ('foreground', 'panoptic', 'instance', 'referring'):
        assert (drawn[0:4, 0:6] == 100).all(), 'background was painted'


def test_hook_writes_one_folder_per_source(visualizer, tmp_path):
    from mmdet.registry import HOOKS
    hook = HOOKS.build(dict(type='QueryMeldVisualizationHook', draw=True, test_out_dir='vis',
                            max_per_source=1))
    img_path = str(tmp_path / 'img.png')
    cv2.imwrite(img_path, np.full((H, W, 3), 100, np.uint8))
    outputs = []
    for source, task in (('coco_panoptic', 'panoptic'), ('coco_instance', 'instance'),
                         ('coco_instance', 'instance')):
        sample = _sample(task, ['a thing'], num_pred=1)
        sample.set_metainfo(dict(source=source, img_path=img_path))
        outputs.append(sample)
    runner = SimpleNamespace(work_dir=str(tmp_path), timestamp='ts')
    hook.after_test_iter(runner, 0, {}, outputs)
    root = tmp_path / 'ts' / 'vis'
    assert sorted(p.name for p in (root / 'coco_panoptic').iterdir()) == ['panoptic_img.png']
    assert sorted(p.name for p in (root / 'coco_instance').iterdir()) == ['instance_img.png']
    assert osp.getsize(root / 'coco_instance' / 'instance_img.png') > 0
