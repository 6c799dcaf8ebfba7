"""A mixed evaluation set (panoptic, referring, foreground, semantic sources) for the wrapper
tests, in one process and across ranks (see dist_worker.py)."""
from typing import List, Tuple

import numpy as np
from mmdet.structures import DetDataSample

from eval_samples import (box_mask, foreground_sample, panoptic_case, panoptic_sample,
                          referring_case, semantic_sample)

SEM_CLASSES = ('a', 'b', 'c')


def world() -> Tuple[List[DetDataSample], dict, dict]:
    """Return (samples, evaluator config, dataset_meta)."""
    samples = []
    for s in panoptic_case():
        s.set_metainfo(dict(source='coco_pano'))
        samples.append(s)
    # ADE-like panoptic source: thing/stuff only in its per-source metainfo, perfect prediction
    h, w = 6, 6
    m_a, m_b = box_mask(h, w, slice(0, 3), slice(0, 6)), box_mask(h, w, slice(3, 6), slice(0, 6))
    samples.append(panoptic_sample(h, w, [m_a, m_b], [0, 1], np.where(m_a, 1000, 1 + 2000),
                                   query_types=[1, 0], texts=['table', 'floor'], flags=None,
                                   img_path='ade.png', source='ade_pano'))
    for s in referring_case():
        s.set_metainfo(dict(source='refcoco'))
        samples.append(s)
    gt = np.zeros((4, 4), dtype=np.int64)
    gt[0:2, 0:2] = 1
    samples.append(foreground_sample(gt, np.where(gt == 1, 0.8, 0.2), source='sod'))
    samples.append(semantic_sample(np.array([[0, 0, 1, 1], [2, 2, 255, 255]]),
                                   np.array([[0, 1, 1, 1], [2, 0, 2, 0]]), SEM_CLASSES,
                                   source='ade_sem'))
    samples.append(foreground_sample(gt, gt.astype(float), source='not_evaluated'))
    cfg = dict(
        type='MultiSourceMetric',
        metrics=dict(coco_pano=dict(type='PanopticQualityMetric'),
                     ade_pano=dict(type='PanopticQualityMetric'),
                     refcoco=dict(type='ReferringMetric'),
                     sod=dict(type='ForegroundMetric'),
                     ade_sem=dict(type='OpenVocabIoUMetric'),
                     never_seen=dict(type='ReferringMetric')),
        mean_over=[dict(name='mean_PQ', key='panoptic/PQ', sources=['coco_pano', 'ade_pano'])])
    meta = dict(classes=('whatever', ),
                sources=dict(coco_pano=dict(classes=('cat', 'dog', 'sky')),
                             ade_pano=dict(classes=('table', 'floor'), thing_classes=('table', ),
                                           stuff_classes=('floor', )),
                             ade_sem=dict(classes=SEM_CLASSES)))
    return samples, cfg, meta
