"""OpenVocabIoUMetric (mmseg's IoUMetric on the project's samples) on a crafted case."""
import numpy as np
import pytest
from mmseg.evaluation.metrics import IoUMetric

from eval_samples import semantic_sample
from mmquerymeld.evaluation import OpenVocabIoUMetric

CLASSES = ('a', 'b', 'c')
GT = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
PRED = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
# valid pixels: 6. class a: I 1, U 3; b: I 2, U 3; c: I 1, U 2 -> mIoU = (1/3 + 2/3 + 1/2) / 3
MIOU = 100 * (1 / 3 + 2 / 3 + 1 / 2) / 3
AACC = 100 * 4 / 6


def _run(samples, **kwargs):
    metric = OpenVocabIoUMetric(**kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [s.to_dict() for s in samples])
    return metric.evaluate(len(samples))


def test_miou_hand_computed():
    res = _run([semantic_sample(GT, PRED, CLASSES)])
    assert res['semantic/mIoU'] == pytest.approx(MIOU, abs=0.01)
    assert res['semantic/aAcc'] == pytest.approx(AACC, abs=0.01)


def test_reordered_vocabulary_is_translated_by_name():
    texts = ['c', 'a', 'b']  # text index -> class: 0 -> 2, 1 -> 0, 2 -> 1
    to_text = {2: 0, 0: 1, 1: 2}
    pred_texts = np.vectorize(to_text.get)(PRED)
    res = _run([semantic_sample(GT, pred_texts, texts)])
    assert res['semantic/mIoU'] == pytest.approx(MIOU, abs=0.01)
    # gt in text indices too
    gt_texts = np.where(GT == 255, 255, np.vectorize(lambda v: to_text.get(v, v))(GT))
    res = _run([semantic_sample(gt_texts, pred_texts, texts)], gt_label_space='texts')
    assert res['semantic/mIoU'] == pytest.approx(MIOU, abs=0.01)


def test_plain_mmseg_metric_does_not_read_our_samples():
    # why the subclass exists: mmseg reads pred_sem_seg.data, the contract has .sem_seg
    metric = IoUMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(KeyError):
        metric.process({}, [semantic_sample(GT, PRED, CLASSES).to_dict()])


def test_unknown_text_and_shape_mismatch_are_clear_errors():
    with pytest.raises(KeyError, match='s.png'):
        _run([semantic_sample(GT, PRED, ['a', 'b', 'zebra'])])
    with pytest.raises(ValueError, match='s.png'):
        _run([semantic_sample(GT, PRED[:, :3], CLASSES)])


def test_cleaned_prompt_texts_match_raw_class_names():
    # ToUnifiedTargets(clean_names=True) turns mmseg's ADE20K 'bed ' (trailing space) and
    # 'traffic_light' style names into prompt text; the metric must still map them back
    raw = ('a', 'bed ', 'traffic_light')
    texts = ['a', 'bed', 'traffic light']
    metric = OpenVocabIoUMetric()
    metric.dataset_meta = dict(classes=raw)
    metric.process({}, [semantic_sample(GT, PRED, texts).to_dict()])
    assert metric.evaluate(1)['semantic/mIoU'] == pytest.approx(MIOU, abs=0.01)


def test_thing_and_stuff_miou_split():
    # class a is a thing (IoU 1/3); b, c are stuff (IoU 2/3, 1/2) -- hand-computed above
    res = _run([semantic_sample(GT, PRED, CLASSES)], thing_classes=('a', ))
    assert res['semantic/mIoU_th'] == pytest.approx(100 / 3, abs=0.01)
    assert res['semantic/mIoU_st'] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2, abs=0.01)
    assert res['semantic/mIoU'] == pytest.approx(MIOU, abs=0.01)
    # the same split from dataset_meta['thing_flags'] (things b and c this time)
    metric = OpenVocabIoUMetric()
    metric.dataset_meta = dict(classes=CLASSES, thing_flags=[False, True, True])
    metric.process({}, [semantic_sample(GT, PRED, CLASSES).to_dict()])
    res = metric.evaluate(1)
    assert res['semantic/mIoU_th'] == pytest.approx(100 * (2 / 3 + 1 / 2) / 2, abs=0.01)
    assert res['semantic/mIoU_st'] == pytest.approx(100 / 3, abs=0.01)
    # without thing / stuff information there is no split; an unknown thing name is an error
    assert 'semantic/mIoU_th' not in _run([semantic_sample(GT, PRED, CLASSES)])
    with pytest.raises(KeyError, match='zebra'):
        _run([semantic_sample(GT, PRED, CLASSES)], thing_classes=('zebra', ))
