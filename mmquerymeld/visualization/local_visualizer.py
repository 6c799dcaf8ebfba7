"""Drawing of QueryMeldNet results with each sample's own vocabulary."""
import colorsys
from typing import List, Optional, Tuple

import numpy as np
from mmdet.evaluation.functional import INSTANCE_OFFSET
from mmdet.registry import VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer


def text_palette(num: int) -> List[Tuple[int, int, int]]:
    """``num`` well-separated RGB colours (golden-ratio hue steps), stable across samples."""
    colours = []
    for i in range(num):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


@VISUALIZERS.register_module()
class QueryMeldLocalVisualizer(DetLocalVisualizer):
    """A :class:`DetLocalVisualizer` that labels with the sample's ``texts``, task by task.

    Open-vocabulary samples carry their own vocabulary (``metainfo['texts']``) instead of a
    dataset-wide class list, so the class names and the palette are taken from each sample:

    - ground truth: the unified ``gt_instances`` (masks + boxes + text labels; box-only
      instances as boxes), whatever the task;
    - predictions: ``pred_panoptic_seg`` (panoptic), ``pred_sem_seg`` (semantic; foreground as
      one region labelled with the prompt), else ``pred_instances`` above ``pred_score_thr``
      (instance, detection) or all of them (referring: one best mask per expression, labelled
      with the expression).
    """

    def add_datasample(self, name: str, image: np.ndarray,
                       data_sample: Optional[DetDataSample] = None, draw_gt: bool = True,
                       draw_pred: bool = True, show: bool = False, wait_time: float = 0,
                       out_file: Optional[str] = None, pred_score_thr: float = 0.3,
                       step: int = 0) -> None:
        """Draw ground truth (left) and prediction (right); see ``DetLocalVisualizer``."""
        if data_sample is None:
            return super().add_datasample(name, image, None, draw_gt, draw_pred, show,
                                          wait_time, out_file, pred_score_thr, step)
        sample = data_sample.cpu().clone()
        texts = list(sample.metainfo.get('texts', []) or [])
        task = sample.metainfo.get('task', 'instance')
        classes = texts
        if task == 'foreground' and 'pred_sem_seg' in sample:
            # prediction values: 1 foreground, 0 background -> draw only the foreground region,
            # labelled with the prompt (texts[0]) like the ground-truth instance
            fg = sample.pred_sem_seg.sem_seg
            sample.pred_sem_seg.sem_seg = (fg != 1).long() * 255
        if task == 'referring':
            pred_score_thr = -1.0  # every expression has exactly one (best) prediction
        # ground truth is drawn from the unified instances only; semantic / panoptic maps of the
        # ground truth index the dataset classes, not the sample's texts
        for key in ('gt_sem_seg', 'gt_panoptic_seg'):
            if key in sample:
                delattr(sample, key)
        if 'gt_instances' in sample and 'mask_valid' in sample.gt_instances:
            gt = sample.gt_instances
            if not bool(gt.mask_valid.all()) and 'masks' in gt:
                # box-only instances: keep the boxes, do not paint empty masks
                del gt.masks
        num_texts = len(texts)
        if task == 'semantic' and 'pred_sem_seg' in sample:
            # indices outside the vocabulary (none for a well-formed prediction; every pixel when
            # the vocabulary is empty) are not drawn instead of failing on the class lookup
            seg = sample.pred_sem_seg.sem_seg
            sample.pred_sem_seg.sem_seg = seg.masked_fill((seg < 0) | (seg >= num_texts), 255)
        if task == 'panoptic' and 'pred_panoptic_seg' in sample:
            labels = sample.pred_panoptic_seg.sem_seg % INSTANCE_OFFSET
            if not bool((labels < num_texts).any()):
                # all void (no segment kept): mmdet's drawing cannot handle an empty segment list
                delattr(sample, 'pred_panoptic_seg')
        # draw one kind of prediction per task
        if task == 'panoptic' and 'pred_panoptic_seg' in sample:
            for key in ('pred_instances', 'pred_sem_seg'):
                if key in sample:
                    delattr(sample, key)
        elif task in ('semantic', 'foreground') and 'pred_sem_seg' in sample:
            for key in ('pred_instances', 'pred_panoptic_seg'):
                if key in sample:
                    delattr(sample, key)
        elif task == 'panoptic':
            # nothing kept: an empty prediction panel (not the segments' instances again)
            for key in ('pred_instances', 'pred_sem_seg'):
                if key in sample:
                    delattr(sample, key)
        elif 'pred_instances' in sample:
            for key in ('pred_sem_seg', 'pred_panoptic_seg'):
                if key in sample:
                    delattr(sample, key)
        saved_meta = self.dataset_meta
        self.dataset_meta = dict(classes=classes, palette=text_palette(max(len(classes), 1)))
        try:
            super().add_datasample(name, image, sample, draw_gt, draw_pred, show, wait_time,
                                   out_file, pred_score_thr, step)
        finally:
            self.dataset_meta = saved_meta
