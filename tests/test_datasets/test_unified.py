"""ToUnifiedTargets / PackQueryMeldInputs on hand-built results (vocabulary sampling, remaps)."""
import numpy as np
import pytest
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks

from mmquerymeld.datasets.transforms import PackQueryMeldInputs, ToUnifiedTargets

CLASSES = [f'class{i}' for i in range(10)]


def _semantic_results():
    seg = np.full((8, 8), 255, np.uint8)
    seg[:4] = 7
    seg[4:, :4] = 2
    return dict(task='semantic', source='s', source_meta=dict(classes=CLASSES),
                img=np.zeros((8, 8, 3), np.uint8), img_shape=(8, 8), ori_shape=(8, 8),
                gt_seg_map=seg, ignore_index=255)


def test_semantic_vocabulary_cap_and_seg_remap():
    np.random.seed(0)
    out = ToUnifiedTargets(max_texts=3, keep_sem_seg=True)(_semantic_results())
    texts = out['texts']
    assert len(texts) == 3 and {'class7', 'class2'} <= set(texts)
    labels = out['gt_bboxes_labels']
    assert sorted(texts[i] for i in labels) == ['class2', 'class7']
    seg = out['gt_seg_map']
    assert (seg[:4] == texts.index('class7')).all()
    assert (seg[4:, :4] == texts.index('class2')).all() and (seg[4:, 4:] == 255).all()
    boxes = out['gt_bboxes'].numpy()
    np.testing.assert_array_equal(boxes[list(labels).index(texts.index('class7'))],
                                  [0, 0, 8, 4])


def test_panoptic_cap_keeps_thing_flags_aligned():
    np.random.seed(1)
    flags = [True] * 5 + [False] * 5
    masks = np.zeros((1, 8, 8), np.uint8)
    masks[0, 1:3, 1:3] = 1
    seg = np.full((8, 8), 9, np.uint8)
    seg[1:3, 1:3] = 3
    res = dict(task='panoptic', source='p', source_meta=dict(classes=CLASSES, thing_flags=flags),
               img=np.zeros((8, 8, 3), np.uint8), img_shape=(8, 8), ori_shape=(8, 8),
               gt_bboxes=HorizontalBoxes(np.array([[1, 1, 3, 3]], np.float32)),
               gt_bboxes_labels=np.array([3]), gt_ignore_flags=np.array([False]),
               gt_masks=BitmapMasks(masks, 8, 8), gt_seg_map=seg)
    out = ToUnifiedTargets(max_texts=4)(res)
    texts, tf = out['texts'], out['thing_flags']
    assert len(texts) == 4 == len(tf)
    for t, f in zip(texts, tf):
        assert f == flags[CLASSES.index(t)]
    assert sorted(texts[i] for i in out['gt_bboxes_labels']) == ['class3', 'class9']
    assert 'gt_ignore_flags' not in out and 'gt_seg_map' not in out


def test_crowd_and_emptied_instances_are_dropped():
    masks = np.zeros((3, 8, 8), np.uint8)
    masks[0, :2, :2] = 1
    masks[1, 4:, 4:] = 1  # crowd
    res = dict(task='instance', source='i', source_meta=dict(classes=CLASSES),
               img=np.zeros((8, 8, 3), np.uint8), img_shape=(8, 8),
               gt_bboxes=HorizontalBoxes(np.array([[0, 0, 3, 3], [4, 4, 8, 8], [5, 5, 6, 6]],
                                                  np.float32)),
               gt_bboxes_labels=np.array([1, 2, 3]),
               gt_ignore_flags=np.array([False, True, False]),
               gt_masks=BitmapMasks(masks, 8, 8))  # instance 2 lost its mask to a crop
    out = ToUnifiedTargets()(res)
    assert out['gt_bboxes_labels'].tolist() == [1]
    np.testing.assert_array_equal(out['gt_bboxes'].numpy(), [[0, 0, 2, 2]])  # from the mask
    assert out['gt_mask_valid'].tolist() == [True]


def test_clear_errors():
    with pytest.raises(KeyError, match='task'):
        ToUnifiedTargets()(dict(img_shape=(4, 4)))
    res = dict(task='referring', source='r', source_meta={}, img_shape=(4, 4),
               gt_bboxes=HorizontalBoxes(np.zeros((0, 4), np.float32)),
               gt_bboxes_labels=np.zeros(0, np.int64))
    with pytest.raises(KeyError, match='instance texts'):
        ToUnifiedTargets()(res)
    with pytest.raises(KeyError, match='texts'):
        PackQueryMeldInputs()(dict(img=np.zeros((4, 4, 3), np.uint8), task='semantic',
                                   source='s', img_path='x.jpg'))


def test_pack_semantic_sample():
    out = ToUnifiedTargets(keep_sem_seg=True, test_mode=True)(_semantic_results())
    packed = PackQueryMeldInputs()(out)
    s = packed['data_samples']
    assert s.gt_sem_seg.sem_seg.dtype.is_floating_point is False
    assert tuple(s.gt_sem_seg.sem_seg.shape) == (1, 8, 8)
    assert s.gt_sem_seg.ignore_index == 255 and s.texts == CLASSES
    assert s.gt_instances.labels.tolist() == [2, 7]
