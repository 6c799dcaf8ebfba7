"""Mask / box AP through mmdet's CocoMetric and OpenVocabCocoMetric on a tiny COCO json."""
import os.path as osp

import pytest
from mmengine.evaluator import Evaluator

from eval_samples import COCO_CLASSES, coco_samples, write_coco_json
from mmquerymeld.evaluation import OpenVocabCocoMetric


def _evaluator(metrics, classes=COCO_CLASSES):
    evaluator = Evaluator(metrics)
    evaluator.dataset_meta = dict(classes=classes,
                                  sources=dict(toy=dict(classes=classes),
                                               toy_wrong=dict(classes=classes)))
    return evaluator


def test_perfect_predictions_give_ap_one_through_the_wrapper(tmp_path):
    ann = osp.join(tmp_path, 'toy.json')
    write_coco_json(ann)
    evaluator = _evaluator(dict(
        type='MultiSourceMetric',
        metrics=dict(toy=dict(type='CocoMetric', ann_file=ann, metric=['bbox', 'segm']),
                     toy_wrong=dict(type='OpenVocabCocoMetric', ann_file=ann, metric='segm')),
        mean_over=dict(name='seginw_mean_mAP', key='coco/segm_mAP')))
    samples = coco_samples('toy') + coco_samples('toy_wrong', swap_labels=True)
    evaluator.process(samples[:2])
    evaluator.process(samples[2:])
    res = evaluator.evaluate(len(samples))
    assert res['toy/coco/segm_mAP'] == pytest.approx(1.0)
    assert res['toy/coco/bbox_mAP'] == pytest.approx(1.0)
    assert res['toy_wrong/coco/segm_mAP'] == pytest.approx(0.0)
    assert res['seginw_mean_mAP'] == pytest.approx(0.5)


def test_open_vocab_coco_maps_texts_and_json_category_order_by_name(tmp_path):
    ann = osp.join(tmp_path, 'toy_reversed.json')
    write_coco_json(ann, category_order=(1, 0))  # json lists circle before square
    texts = ['circle', 'square']  # the samples' vocabulary is reordered too
    ours = _evaluator(dict(type='OpenVocabCocoMetric', ann_file=ann, metric='segm'))
    ours.process(coco_samples(texts=texts))
    assert ours.evaluate(2)['coco/segm_mAP'] == pytest.approx(1.0)
    # mmdet's CocoMetric takes the json's category order as the label order: wrong here
    plain = _evaluator(dict(type='CocoMetric', ann_file=ann, metric='segm'))
    plain.process(coco_samples())
    assert plain.evaluate(2)['coco/segm_mAP'] < 0.5


def test_open_vocab_coco_empty_results(tmp_path):
    ann = osp.join(tmp_path, 'toy.json')
    write_coco_json(ann)
    metric = OpenVocabCocoMetric(ann_file=ann)
    metric.dataset_meta = dict(classes=COCO_CLASSES)
    assert metric.evaluate(0) == {}


def test_panoptic_source_scored_on_instances_json_drops_stuff(tmp_path):
    # Table 2 config: a COCO panoptic source (things + stuff classes) scored with the
    # instances json, which lists the things only; texts are the cleaned class names
    import torch
    from mmengine.structures import InstanceData
    ann = osp.join(tmp_path, 'toy.json')
    write_coco_json(ann)
    classes = COCO_CLASSES + ('sky-other-merged', )
    texts = list(COCO_CLASSES) + ['sky']
    samples = coco_samples(texts=texts)
    for s in samples:  # a confident stuff segment covering the image: not a COCO category
        p = s.pred_instances
        full = torch.ones((1, 32, 32), dtype=torch.bool)
        s.pred_instances = InstanceData(
            masks=torch.cat([p.masks, full]), bboxes=torch.cat([p.bboxes, torch.tensor(
                [[0., 0., 32., 32.]])]), scores=torch.cat([p.scores, torch.ones(1)]),
            labels=torch.cat([p.labels, torch.tensor([2])]),
            query_types=torch.cat([p.query_types, torch.zeros(1, dtype=torch.long)]))
    metric = OpenVocabCocoMetric(ann_file=ann, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=classes)
    metric.process({}, [s.to_dict() for s in samples])
    res = metric.evaluate(len(samples))
    assert res['coco/segm_mAP'] == pytest.approx(1.0)
    assert res['coco/bbox_mAP'] == pytest.approx(1.0)
    assert metric.cat_ids == [3, 7]


def test_open_vocab_coco_no_class_in_ann_file_is_an_error(tmp_path):
    ann = osp.join(tmp_path, 'toy.json')
    write_coco_json(ann)
    metric = OpenVocabCocoMetric(ann_file=ann)
    metric.dataset_meta = dict(classes=('zebra', 'lion'))
    dicts = [s.to_dict() for s in coco_samples()]
    for d in dicts:
        d.pop('texts')  # labels index dataset_meta['classes'] directly
    metric.process({}, dicts)
    with pytest.raises(KeyError, match='none of'):
        metric.evaluate(2)
