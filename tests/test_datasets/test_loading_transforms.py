"""Loading transforms against the reference behaviour of the installed libraries."""
import numpy as np
import pytest
from mmseg.datasets.transforms import LoadAnnotations as MMSegLoadAnnotations
from PIL import Image

from mmquerymeld.datasets.transforms import LoadSemSegAnnotations


@pytest.mark.parametrize('reduce_zero_label', [True, False])
def test_label_map_applies_after_reduce_zero_label_as_mmseg(tmp_path, reduce_zero_label):
    # ADE-style map: 0 = other, classes 1..4 (reduced: 0..3), 255 = ignore
    raw = np.array([[0, 1, 2, 3], [4, 255, 1, 2]], dtype=np.uint8)
    path = str(tmp_path / 'map.png')
    Image.fromarray(raw).save(path)
    # custom classes: keep reduced classes 1 and 3 (BaseSegDataset.get_label_map layout)
    label_map = {0: 255, 1: 0, 2: 255, 3: 1}
    results = dict(seg_map_path=path, reduce_zero_label=reduce_zero_label, label_map=label_map,
                   seg_fields=[])
    ours = LoadSemSegAnnotations()(dict(results))['gt_seg_map']
    ref = MMSegLoadAnnotations()(dict(results, seg_fields=[]))['gt_seg_map']
    np.testing.assert_array_equal(ours, ref)
    if reduce_zero_label:  # raw 2 -> reduced 1 -> new 0; raw 4 -> reduced 3 -> new 1
        np.testing.assert_array_equal(ours, [[255, 255, 0, 255], [1, 255, 255, 0]])


def _tiny_panoptic_world(root):
    """16x16 COCO panoptic image: a person, a crowd of persons, road, a void strip."""
    import json
    import os

    from mmquerymeld.datasets.utils import id2rgb
    os.makedirs(root / 'img')
    os.makedirs(root / 'pan')
    ids = np.zeros((16, 16), dtype=np.int64)
    ids[0:4, 0:8] = 5  # person
    ids[0:8, 8:16] = 6  # crowd of persons
    ids[8:16, :] = 7  # road; rows 4:8, cols 0:8 stay void
    Image.fromarray(id2rgb(ids)).save(root / 'pan' / 'a.png')
    Image.fromarray(np.full((16, 16, 3), 90, dtype=np.uint8)).save(root / 'img' / 'a.jpg')

    def seg(i, cat, crowd, box):
        return dict(id=i, category_id=cat, iscrowd=crowd, bbox=box,
                    area=int((ids == i).sum()))

    ann = dict(
        images=[dict(id=1, file_name='a.jpg', width=16, height=16)],
        annotations=[dict(image_id=1, file_name='a.png', segments_info=[
            seg(5, 1, 0, [0, 0, 8, 4]), seg(6, 1, 1, [8, 0, 8, 8]), seg(7, 50, 0, [0, 8, 16, 8])])],
        categories=[dict(id=1, name='person', isthing=1), dict(id=3, name='car', isthing=1),
                    dict(id=50, name='road', isthing=0)])
    with open(root / 'pan.json', 'w') as f:
        json.dump(ann, f)
    return ids


def test_panoptic_eval_keeps_crowd_regions_for_pq(tmp_path):
    # panopticapi pq_compute: crowd regions are neither void nor matched; a prediction of
    # another class on a crowd region is a false positive
    import torch
    from mmengine.structures import PixelData

    from mmquerymeld.datasets import MultiSourceDataset
    from mmquerymeld.evaluation import PanopticQualityMetric
    ids = _tiny_panoptic_world(tmp_path)
    ds = MultiSourceDataset([dict(
        name='pano', task='panoptic',
        dataset=dict(type='QMCocoPanopticDataset', data_root=str(tmp_path), ann_file='pan.json',
                     data_prefix=dict(img='img/', seg='pan/'), test_mode=True),
        pipeline=[dict(type='SafeLoadImageFromFile'),
                  dict(type='LoadCocoPanopticAnnotations', with_crowd=True),
                  dict(type='ToUnifiedTargets', test_mode=True, keep_sem_seg=True),
                  dict(type='PackQueryMeldInputs')])])
    sample = ds[0]['data_samples']
    gt = sample.gt_instances
    assert sample.texts == ['person', 'car', 'road']
    assert gt.labels.tolist() == [0, 2, 0]  # person, road, then the crowd row
    assert gt.ignore_flags.tolist() == [False, False, True]
    np.testing.assert_array_equal(gt.masks.masks[2].astype(bool), ids == 6)
    # prediction: exact person and road, a car on the crowd region
    pan = np.full((16, 16), 3, dtype=np.int64)
    pan[ids == 5] = 0 + 1000
    pan[ids == 6] = 1 + 2000
    pan[ids == 7] = 2 + 3000
    sample.pred_panoptic_seg = PixelData(sem_seg=torch.from_numpy(pan)[None])
    metric = PanopticQualityMetric()
    metric.dataset_meta = ds.metainfo['sources']['pano']
    metric.process({}, [sample.to_dict()])
    res = metric.evaluate(1)
    # person TP (IoU 1), road TP (IoU 1), car FP -> PQ = (1 + 1 + 0) / 3
    assert res['panoptic/PQ'] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert res['panoptic/PQ_th'] == pytest.approx(50.0, abs=1e-3)
