"""PanopticQualityMetric on crafted cases with hand-computed PQ (panopticapi's definitions)."""
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator

from eval_samples import TEXTS, box_mask, panoptic_case, panoptic_sample
from mmquerymeld.evaluation import PanopticQualityMetric
from mmquerymeld.evaluation.functional import panoptic_image_stats, pq_average


def _evaluate(samples, dataset_meta=None, **kwargs):
    metric = PanopticQualityMetric(**kwargs)
    metric.dataset_meta = dataset_meta or dict(classes=TEXTS)
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def test_pq_hand_computed_two_images():
    # per category over both images (see eval_samples.panoptic_case):
    #   cat: IoU 0.8, TP 1, FP 1 (image 2's cat is crowd/void-covered: no FP) -> PQ 0.8/1.5
    #   dog: TP 0, FP 1, FN 2                                                -> PQ 0
    #   sky: IoU 1.0 + 1.0, TP 2 (void pixels leave the union; the mostly-void sky is no FP)
    res = _evaluate(panoptic_case())
    pq_cat, sq_cat, rq_cat = 0.8 / 1.5, 0.8, 1 / 1.5
    assert res['panoptic/PQ'] == pytest.approx(100 * (pq_cat + 0 + 1) / 3, abs=1e-3)
    assert res['panoptic/SQ'] == pytest.approx(100 * (sq_cat + 0 + 1) / 3, abs=1e-3)
    assert res['panoptic/RQ'] == pytest.approx(100 * (rq_cat + 0 + 1) / 3, abs=1e-3)
    assert res['panoptic/PQ_th'] == pytest.approx(100 * pq_cat / 2, abs=1e-3)
    assert res['panoptic/SQ_th'] == pytest.approx(100 * sq_cat / 2, abs=1e-3)
    assert res['panoptic/RQ_th'] == pytest.approx(100 * rq_cat / 2, abs=1e-3)
    assert res['panoptic/PQ_st'] == pytest.approx(100.0)
    assert res['panoptic/SQ_st'] == pytest.approx(100.0)
    # query-type split: 1 matched thing (conditional), 2 matched stuff (1 learnable)
    assert res['panoptic/thing_by_conditional'] == pytest.approx(100.0)
    assert res['panoptic/stuff_by_learnable'] == pytest.approx(50.0)


def test_void_and_crowd_rules_single_image_stats():
    s1, s2 = panoptic_case()
    d = s2.to_dict()
    gt = torch.from_numpy(d['gt_instances']['masks'].masks).bool()
    stats = panoptic_image_stats(gt, d['gt_instances']['labels'],
                                 d['pred_panoptic_seg']['sem_seg'][0], void_label=3,
                                 gt_crowd=d['gt_instances']['ignore_flags'])
    # sky: one TP with IoU exactly 1 (4 void pixels of the prediction leave the union)
    assert stats.per_label[2] == [pytest.approx(1.0), 1, 0, 0]
    # dog: FN only; cat: nothing (crowd gt never FN, prediction covered by crowd + void)
    assert stats.per_label[1] == [0.0, 0, 0, 1]
    assert 0 not in stats.per_label
    assert stats.matches == [(0, 2 + 1000)]
    # without the crowd flag the cat prediction (8/12 on the gt cat) becomes a match instead
    stats_nc = panoptic_image_stats(gt, d['gt_instances']['labels'],
                                    d['pred_panoptic_seg']['sem_seg'][0], void_label=3)
    assert stats_nc.per_label[0][1] == 1  # IoU 8 / (12 + 8 - 8 - 4) = 1.0 > 0.5


def test_iou_exactly_half_is_not_a_match():
    h, w = 4, 4
    g = box_mask(h, w, slice(0, 2), slice(0, 4))  # 8 px
    pan = np.full((h, w), 1, dtype=np.int64)  # texts ['a'] -> void = 1
    pan[0:1, :] = 1000  # 4 px inside the gt, IoU = 4 / 8 = 0.5
    pan[2:4, :] = 1000  # 8 more px of the same segment where no gt is: void
    stats = panoptic_image_stats(torch.from_numpy(g)[None], torch.tensor([0]),
                                 torch.from_numpy(pan), void_label=1)
    # inter 4, pred area 12 of which 8 void: union = 12 + 8 - 4 - 8 = 8 -> IoU 0.5: no match
    assert stats.per_label[0] == [0.0, 0, 0, 1]  # FN; the prediction is 8/12 void: not FP


def test_pq_average_skips_absent_categories_and_handles_empty_subset():
    per_cat = {'a': [0.9, 1, 0, 0], 'b': [0.0, 0, 0, 0]}
    avg = pq_average(per_cat, {'a': True, 'b': False})
    assert avg == dict(pq=pytest.approx(0.9), sq=pytest.approx(0.9), rq=1.0, n=1)
    assert pq_average(per_cat, {'a': True, 'b': False}, subset=False)['n'] == 0


def test_perfect_prediction_through_evaluator_with_dataset_meta_flags():
    h, w = 6, 6
    m_a = box_mask(h, w, slice(0, 3), slice(0, 6))
    m_b = box_mask(h, w, slice(3, 6), slice(0, 6))
    pan = np.where(m_a, 0 + 1000, 1 + 2000)
    s = panoptic_sample(h, w, [m_a, m_b], [0, 1], pan, query_types=[1, 0],
                        texts=['person', 'road'], flags=None)
    evaluator = Evaluator(dict(type='PanopticQualityMetric'))
    evaluator.dataset_meta = dict(classes=('person', 'road'), thing_classes=('person', ),
                                  stuff_classes=('road', ))
    evaluator.process([s])  # DetDataSample: the Evaluator converts it with to_dict()
    res = evaluator.evaluate(1)
    assert res['panoptic/PQ'] == pytest.approx(100.0)
    assert res['panoptic/PQ_th'] == pytest.approx(100.0)
    assert res['panoptic/PQ_st'] == pytest.approx(100.0)
    assert res['panoptic/thing_by_conditional'] == 100.0
    assert res['panoptic/stuff_by_learnable'] == 100.0


def test_category_identity_is_the_name_across_vocabularies():
    # the same class at different label indices in two samples accumulates as one category
    h, w = 4, 4
    m = box_mask(h, w, slice(0, 2), slice(0, 4))
    s1 = panoptic_sample(h, w, [m], [0], np.where(m, 1000, 2), texts=['cat', 'dog'],
                         flags=[True, True])
    s2 = panoptic_sample(h, w, [m], [1], np.full((h, w), 2), texts=['dog', 'cat'],
                         flags=[True, True])  # 'cat' missed in image 2
    res = _evaluate([s1, s2])
    # cat: TP 1 (IoU 1), FN 1 -> PQ = 1 / 1.5 ; only category present
    assert res['panoptic/PQ'] == pytest.approx(100 / 1.5, abs=1e-3)


def test_empty_results_warn_and_return_nothing():
    metric = PanopticQualityMetric()
    metric.dataset_meta = dict(classes=TEXTS)
    assert metric.evaluate(0) == {}


def test_shape_mismatch_names_the_image():
    h, w = 4, 4
    m = box_mask(h, w, slice(0, 2), slice(0, 4))
    s = panoptic_sample(h, w, [m], [0], np.zeros((5, 4), dtype=np.int64), img_path='bad.png')
    with pytest.raises(ValueError, match='bad.png'):
        _evaluate([s])


def test_missing_thing_information_is_a_clear_error():
    h, w = 4, 4
    m = box_mask(h, w, slice(0, 2), slice(0, 4))
    s = panoptic_sample(h, w, [m], [0], np.where(m, 1000, 3), flags=None, img_path='x.png')
    with pytest.raises(KeyError, match='thing_flags'):
        _evaluate([s], dataset_meta=dict(classes=TEXTS))


def test_instance_id_without_pred_instances_row_raises():
    h, w = 4, 4
    m = box_mask(h, w, slice(0, 2), slice(0, 4))
    s = panoptic_sample(h, w, [m], [0], np.where(m, 5000, 3), query_types=[1], img_path='q.png')
    with pytest.raises(ValueError, match='q.png'):
        _evaluate([s])


def test_query_split_with_segment_ids_and_stuff_inst_id_zero():
    # mmdet convention (the model's post-processing): stuff has inst id 0, things 1..; the
    # rows of pred_instances are found through pred_instances.segment_ids
    h, w = 6, 6
    m_cat = box_mask(h, w, slice(0, 3), slice(0, 3))
    m_sky = box_mask(h, w, slice(3, 6), slice(0, 6))
    pan = np.full((h, w), 3, dtype=np.int64)
    pan[m_sky] = 2  # stuff: label 2, inst id 0 (row 0)
    pan[m_cat] = 0 + 1000  # thing: row 1
    s = panoptic_sample(h, w, [m_cat, m_sky], [0, 2], pan, query_types=[0, 1])
    s.pred_instances.segment_ids = torch.tensor([2, 1000])
    res = _evaluate([s])
    assert res['panoptic/PQ'] == pytest.approx(100.0)
    assert res['panoptic/thing_by_conditional'] == pytest.approx(100.0)
    assert res['panoptic/stuff_by_learnable'] == pytest.approx(100.0)
    # unknown query types (-1) are left out of the split
    s.pred_instances.query_types = torch.tensor([-1, 1])
    res = _evaluate([s])
    assert 'panoptic/stuff_by_learnable' not in res
    assert res['panoptic/thing_by_conditional'] == pytest.approx(100.0)


def test_thing_flags_from_dataset_meta_classes():
    h, w = 4, 4
    m_a = box_mask(h, w, slice(0, 2), slice(0, 4))
    m_b = box_mask(h, w, slice(2, 4), slice(0, 4))
    s = panoptic_sample(h, w, [m_a, m_b], [0, 1], np.where(m_a, 1000, 2), texts=['b', 'a'],
                        flags=None)  # 'b' (thing) perfect, 'a' (stuff) missed
    res = _evaluate([s], dataset_meta=dict(classes=('a', 'b'), thing_flags=[False, True]))
    assert res['panoptic/PQ_th'] == pytest.approx(100.0)
    assert res['panoptic/PQ_st'] == pytest.approx(0.0)


@pytest.mark.parametrize('meta', [
    dict(classes=('person', 'road-other-merged'), thing_flags=[True, False]),
    dict(thing_classes=('person', ), stuff_classes=('road-other-merged', ))])
def test_thing_flags_match_cleaned_prompt_texts(meta):
    # texts are the prompt text of COCO panoptic names ('road-other-merged' -> 'road')
    h, w = 6, 6
    m_a = box_mask(h, w, slice(0, 3), slice(0, 6))
    m_b = box_mask(h, w, slice(3, 6), slice(0, 6))
    s = panoptic_sample(h, w, [m_a, m_b], [0, 1], np.where(m_a, 1000, 2), texts=['person', 'road'],
                        flags=None)  # person perfect, road missed
    res = _evaluate([s], dataset_meta=meta)
    assert res['panoptic/PQ_th'] == pytest.approx(100.0)
    assert res['panoptic/PQ_st'] == pytest.approx(0.0)
