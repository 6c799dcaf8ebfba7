"""Shared fixtures of the annotation tools: one small synthetic world (its box-only detection
split is the tools' input) and a copy of that split with every kind of bad input."""
import json
import os
import os.path as osp
import shutil
from typing import Dict

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
#: Small on purpose: every tool test runs on these 4 train images of 64 px.
WORLD = dict(seed=0, num_train=4, num_val=2, img_size=64)


@pytest.fixture(scope='session')
def annotation_world(tmp_path_factory) -> Dict[str, str]:
    """A generated synthetic world; ``box_json`` / ``image_root``: its box-only train split."""
    from mmquerymeld.testing import generate_synthetic_world
    root = str(tmp_path_factory.mktemp('annotation_world'))
    generate_synthetic_world(root, **WORLD)
    return dict(root=root,
                box_json=osp.join(root, 'detection', 'annotations', 'boxes_train.json'),
                image_root=osp.join(root, 'detection', 'images', 'train'))


def write_bad_split(world: Dict[str, str], dst: str) -> Dict[str, object]:
    """Copy the box-only split to ``dst`` and break it: image 0 missing, image 1 corrupt
    (undecodable bytes), and on image 2 one extra box outside the image and one of zero area.

    Returns:
        ``box_json``, ``image_root``, and ``broken``: the ids of the missing / corrupt images
        and of the two bad boxes.
    """
    image_root = osp.join(dst, 'images')
    shutil.copytree(world['image_root'], image_root)
    with open(world['box_json'], 'r', encoding='utf-8') as f:
        data = json.load(f)
    imgs = data['images']
    os.remove(osp.join(image_root, imgs[0]['file_name']))
    with open(osp.join(image_root, imgs[1]['file_name']), 'wb') as f:
        f.write(b'\xff\xd8 this is not a jpeg' * 4)
    next_id = max(a['id'] for a in data['annotations']) + 1
    w, h = imgs[2]['width'], imgs[2]['height']
    outside = dict(id=next_id, image_id=imgs[2]['id'], category_id=1,
                   bbox=[w + 5.0, 2.0, 10.0, 10.0], area=100.0, iscrowd=0)
    zero = dict(id=next_id + 1, image_id=imgs[2]['id'], category_id=1,
                bbox=[4.0, 4.0, 0.0, 9.0], area=0.0, iscrowd=0)
    data['annotations'] += [outside, zero]
    box_json = osp.join(dst, 'boxes_bad.json')
    with open(box_json, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    n_boxes = {i['id']: sum(a['image_id'] == i['id'] for a in data['annotations']) for i in imgs}
    return dict(box_json=box_json, image_root=image_root,
                broken=dict(missing_image=imgs[0]['id'], corrupt_image=imgs[1]['id'],
                            box_outside_image=outside['id'], zero_area_box=zero['id'],
                            boxes=n_boxes))


@pytest.fixture(scope='session')
def bad_split(annotation_world, tmp_path_factory) -> Dict[str, object]:
    """:func:`write_bad_split` of the world's box-only split (session-wide, read-only)."""
    return write_bad_split(annotation_world, str(tmp_path_factory.mktemp('bad_split')))
