"""The appendix A.2 leakage rule, on a crafted refs file."""
import importlib.util
import json
import os.path as osp
import pickle

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))

_spec = importlib.util.spec_from_file_location(
    'remove_refcoco_leakage',
    osp.join(REPO, 'tools/dataset_converters/remove_refcoco_leakage.py'))
leak = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(leak)


def _ref(ref_id, image_id, split):
    return dict(ref_id=ref_id, ann_id=ref_id * 10, image_id=image_id, split=split,
                sentences=[dict(raw='x', sent='x', tokens=['x'], sent_id=ref_id)],
                sent_ids=[ref_id], category_id=1, file_name='f.jpg')


@pytest.fixture
def crafted(tmp_path):
    (tmp_path / 'refcoco').mkdir()
    (tmp_path / 'refcocog').mkdir()
    (tmp_path / 'coco').mkdir()
    refcoco = [_ref(1, 11, 'train'), _ref(2, 12, 'val'), _ref(3, 13, 'testA'),
               _ref(4, 14, 'testB'), _ref(5, 50, 'train')]
    refcocog = [_ref(6, 15, 'test'), _ref(7, 11, 'train'), _ref(8, 50, 'train')]
    with open(tmp_path / 'refcoco' / 'refs(unc).p', 'wb') as f:
        pickle.dump(refcoco, f)
    with open(tmp_path / 'refcocog' / 'refs(umd).p', 'wb') as f:
        pickle.dump(refcocog, f)
    train = dict(images=[dict(id=i, file_name=f'{i}.jpg', height=8, width=8)
                         for i in (11, 12, 13, 14, 15, 16)],
                 annotations=[dict(id=100 + i, image_id=i, category_id=1, bbox=[0, 0, 2, 2],
                                   area=4) for i in (11, 12, 12, 13, 16)],
                 categories=[dict(id=1, name='a')])
    val = dict(images=[dict(id=50, file_name='50.jpg', height=8, width=8)], annotations=[],
               categories=[dict(id=1, name='a')])
    for name, data in (('instances_train2017.json', train), ('instances_val2017.json', val)):
        with open(tmp_path / 'coco' / name, 'w') as f:
            json.dump(data, f)
    return tmp_path


def test_heldout_ids(crafted):
    ids = leak.heldout_image_ids([str(crafted / 'refcoco' / 'refs(unc).p'),
                                  str(crafted / 'refcocog' / 'refs(umd).p')])
    assert ids == {12, 13, 14, 15}


def test_both_directions(crafted, capsys):
    refs = [str(crafted / 'refcoco' / 'refs(unc).p'), str(crafted / 'refcocog' / 'refs(umd).p')]
    train = str(crafted / 'coco' / 'instances_train2017.json')
    val = str(crafted / 'coco' / 'instances_val2017.json')
    out = crafted / 'clean'
    report = leak.main(['--refs', *refs, '--train-ann', train, '--coco-val', val,
                        '--out-dir', str(out)])
    printed = capsys.readouterr().out
    assert 'removed 4 images' in printed and '[12, 13, 14, 15]' in printed
    assert report[train]['removed_images'] == [12, 13, 14, 15]
    assert report[train]['removed_annotations'] == 3  # 12 (x2) and 13
    with open(out / 'coco' / 'instances_train2017.json') as f:
        cleaned = json.load(f)
    assert [i['id'] for i in cleaned['images']] == [11, 16]
    assert sorted(a['image_id'] for a in cleaned['annotations']) == [11, 16]
    # reverse direction: referring train refs on COCO val images go
    with open(out / 'refcoco' / 'refs(unc).p', 'rb') as f:
        kept = pickle.load(f)
    assert [r['ref_id'] for r in kept] == [1, 2, 3, 4]
    assert report[refs[0]]['removed_refs'] == [5]
    with open(out / 'refcocog' / 'refs(umd).p', 'rb') as f:
        assert [r['ref_id'] for r in pickle.load(f)] == [6, 7]
    assert 'removed 1 train refs' in printed


def test_missing_inputs_name_the_path(crafted):
    with pytest.raises(FileNotFoundError, match='nope.p'):
        leak.remove_refcoco_leakage([str(crafted / 'nope.p')])
    with pytest.raises(FileNotFoundError, match='missing.json'):
        leak.remove_refcoco_leakage([str(crafted / 'refcoco' / 'refs(unc).p')],
                                    [str(crafted / 'missing.json')])
