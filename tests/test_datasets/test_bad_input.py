"""Bad input: unreadable images, missing files, invalid polygons, empty images."""
import copy
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from mmengine.logging import MMLogger

from mmquerymeld.datasets import MultiSourceDataset, QMCocoDataset
from mmquerymeld.datasets.transforms import SafeLoadImageFromFile


@pytest.fixture
def coco_copy(world, tmp_path):
    """A private copy of the COCO-like val split (so it can be damaged)."""
    root = tmp_path / 'coco'
    shutil.copytree(osp.join(world, 'coco', 'val2017'), root / 'val2017')
    shutil.copytree(osp.join(world, 'coco', 'annotations'), root / 'annotations',
                    ignore=shutil.ignore_patterns('panoptic_*'))
    return root


def _instance_src(root, **dataset):
    return dict(name='ins', task='instance', pipeline=[
        dict(type='SafeLoadImageFromFile'), dict(type='LoadQMAnnotations'),
        dict(type='ToUnifiedTargets'), dict(type='PackQueryMeldInputs')],
        dataset=dict(type='QMCocoDataset', data_root=str(root),
                     ann_file='annotations/instances_val2017.json',
                     data_prefix=dict(img='val2017/'), **dataset))


def test_unreadable_image_is_skipped_and_counted(coco_copy, caplog):
    files = sorted(os.listdir(coco_copy / 'val2017'))
    with open(coco_copy / 'val2017' / files[0], 'wb') as f:
        f.write(b'not a jpeg')
    ds = MultiSourceDataset([_instance_src(coco_copy)], max_refetch=5)
    before = SafeLoadImageFromFile.num_skipped
    logger = MMLogger.get_current_instance()
    logger.propagate = True
    item = ds[0]  # refetches another (random) image of the same source
    got = osp.basename(item['data_samples'].img_path)
    assert got in files[1:], (got, files)
    assert SafeLoadImageFromFile.num_skipped >= before + 1
    assert ds.num_skipped_images == SafeLoadImageFromFile.num_skipped
    # bounded: when nothing is readable the dataset gives up after max_refetch tries
    for name in files:
        with open(coco_copy / 'val2017' / name, 'wb') as f:
            f.write(b'')
    before = SafeLoadImageFromFile.num_skipped
    with pytest.raises(Exception, match='Cannot find valid image after 5'):
        ds[0]
    assert SafeLoadImageFromFile.num_skipped - before == 6


def test_missing_annotation_file_names_the_path(coco_copy):
    os.remove(coco_copy / 'annotations' / 'instances_val2017.json')
    with pytest.raises(FileNotFoundError, match='instances_val2017.json'):
        MultiSourceDataset([_instance_src(coco_copy)])
    with pytest.raises(FileNotFoundError, match='instances_val2017.json'):
        QMCocoDataset(data_root=str(coco_copy), ann_file='annotations/instances_val2017.json',
                      data_prefix=dict(img='val2017/'))


def test_invalid_polygons_and_zero_area_are_dropped(coco_copy):
    path = coco_copy / 'annotations' / 'instances_val2017.json'
    with open(path) as f:
        data = json.load(f)
    img = data['images'][0]
    good = [10, 10, 30, 10, 30, 30, 10, 30]
    bad = [
        dict(segmentation=[[1, 1, 5, 5]], bbox=[1, 1, 4, 4], area=8),  # 4 numbers
        dict(segmentation=[[1, 1, 5, 5, 9]], bbox=[1, 1, 8, 4], area=8),  # odd length
        dict(segmentation=[[1, 1, 5, 5, 9, 9]], bbox=[1, 1, 8, 8], area=8),  # collinear
        dict(segmentation=[good], bbox=[10, 10, 0, 20], area=0),  # zero-area box
        dict(segmentation={'size': [4]}, bbox=[1, 1, 8, 8], area=8),  # broken RLE
    ]
    ok = [dict(segmentation=[good, [1, 1, 2, 2]], bbox=[10, 10, 20, 20], area=400)]
    next_id = 10 ** 6
    for extra in bad + ok:
        next_id += 1
        data['annotations'].append(dict(extra, id=next_id, image_id=img['id'], category_id=1,
                                        iscrowd=0))
    n_orig = sum(a['image_id'] == img['id'] for a in data['annotations']) - len(bad) - len(ok)
    with open(path, 'w') as f:
        json.dump(data, f)
    ds = QMCocoDataset(data_root=str(coco_copy), ann_file='annotations/instances_val2017.json',
                       data_prefix=dict(img='val2017/'))
    assert ds.num_dropped == len(bad)
    info = [d for d in (ds.get_data_info(i) for i in range(len(ds))) if d['img_id'] == img['id']]
    insts = info[0]['instances']
    assert len(insts) == n_orig + 1
    assert insts[-1]['mask'] == [[float(v) for v in good]]  # the invalid part of it is gone
    ms = MultiSourceDataset([_instance_src(coco_copy, test_mode=True)])
    idx = [i for i in range(len(ms)) if ms.get_data_info(i)['img_id'] == img['id']][0]
    s = ms[idx]['data_samples']
    assert len(s.gt_instances) == n_orig + 1
    areas = s.gt_instances.masks.masks.reshape(len(s.gt_instances), -1).sum(1)
    assert (areas > 0).all()


def test_images_without_annotations_kept_or_filtered(world):
    base = dict(data_root=osp.join(world, 'coco'), ann_file='annotations/instances_train2017.json',
                data_prefix=dict(img='train2017/'))
    keep = QMCocoDataset(**base, filter_cfg=dict(filter_empty_gt=False))
    drop = QMCocoDataset(**base, filter_cfg=dict(filter_empty_gt=True))
    assert len(keep) == len(drop) + 1
    empty = [keep.get_data_info(i) for i in range(len(keep))
             if not keep.get_data_info(i)['instances']]
    assert len(empty) == 1


def test_sem_seg_and_referring_errors(syn_cfg, world, tmp_path):
    src = copy.deepcopy(syn_cfg['syn_semantic_val'])
    src['dataset']['metainfo'] = dict(classes=('a', 'b'))  # fewer classes than the map holds
    ds = MultiSourceDataset([src])
    with pytest.raises(ValueError, match='outside the 2 classes'):
        ds[0]
    bad = np.zeros((4, 4, 3), np.uint8)
    from PIL import Image
    Image.fromarray(bad).save(tmp_path / 'rgb.png')
    from mmquerymeld.datasets.transforms import LoadSemSegAnnotations
    with pytest.raises(ValueError, match='single-channel'):
        LoadSemSegAnnotations()(dict(seg_map_path=str(tmp_path / 'rgb.png')))
    with pytest.raises(FileNotFoundError, match='nothere.png'):
        LoadSemSegAnnotations()(dict(seg_map_path=str(tmp_path / 'nothere.png')))


def test_test_mode_bad_image_raises_with_path_or_skips_with_placeholder(coco_copy):
    files = sorted(os.listdir(coco_copy / 'val2017'))
    with open(coco_copy / 'val2017' / files[1], 'wb') as f:
        f.write(b'\xff\xd8\xff truncated')
    src = _instance_src(coco_copy, test_mode=True)
    ds = MultiSourceDataset([src])  # default on_bad_image='raise'
    bad = next(i for i in range(len(ds)) if ds.get_data_info(i)['img_path'].endswith(files[1]))
    ds[bad - 1 if bad else bad + 1]  # the readable ones load
    with pytest.raises(RuntimeError, match=f"source 'ins': test image #{bad} .*{files[1]} "
                                           'does not decode'):
        ds[bad]
    skip = MultiSourceDataset([src], on_bad_image='skip')
    item = skip[bad]
    sample = item['data_samples']
    assert sample.bad_image.endswith(files[1]) and sample.source == 'ins'
    info = skip.get_data_info(bad)
    assert sample.ori_shape == (info['height'], info['width'])
    assert not item['inputs'].any()  # a blank placeholder, never another image
    with pytest.raises(ValueError, match='on_bad_image'):
        MultiSourceDataset([src], on_bad_image='ignore')


def test_exclude_list_drops_named_samples_and_refuses_stale_entries(coco_copy):
    src = _instance_src(coco_copy, test_mode=True)
    full = MultiSourceDataset([src])
    paths = [full.get_data_info(i)['img_path'] for i in range(len(full))]
    drop = [dict(source='ins', index=1, path=paths[1]), dict(source='other', index=0)]
    kept = MultiSourceDataset([src], exclude_list=drop)
    assert [kept.get_data_info(i)['img_path'] for i in range(len(kept))] == \
        paths[:1] + paths[2:]
    with pytest.raises(ValueError, match='stale'):
        MultiSourceDataset([src], exclude_list=[dict(source='ins', index=1, path=paths[0])])
    with pytest.raises(ValueError, match='has no sample 99'):
        MultiSourceDataset([src], exclude_list=[dict(source='ins', index=99)])
