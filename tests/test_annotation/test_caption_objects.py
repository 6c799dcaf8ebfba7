"""caption_objects end to end on the synthetic world's box-only split: a tiny random BLIP saved to
disk, the tool run as a subprocess, the output read by BoxCaptionDataset; resume, shards and bad
input through the shared runner."""
import copy
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest

from caption_test_models import REPO, run_tool, summary_line, write_tiny_blip

pytest.importorskip('transformers')

ARGS = ['--max-new-tokens', '6', '--margin', '0.3', '--seed', '7', '--top-p', '0.95']


def _args(box_json, image_root, out, blip_dir, *extra):
    return [box_json, image_root, '--out', out, '--model-dir', blip_dir, *ARGS, *extra]


def _load(path):
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def blip_dir(tmp_path_factory):
    return write_tiny_blip(str(tmp_path_factory.mktemp('blip')))


@pytest.fixture(scope='module')
def captioned(annotation_world, blip_dir, tmp_path_factory):
    """One subprocess run of tools/dataset_converters/caption_objects.py on the world."""
    out = str(tmp_path_factory.mktemp('captions') / 'captions_train.json')
    proc = run_tool('caption_objects', _args(annotation_world['box_json'],
                                             annotation_world['image_root'], out, blip_dir))
    return dict(out=out, summary=summary_line(proc), data=_load(out))


def _count_calls(monkeypatch):
    from mmquerymeld.annotation.captioners import BlipCaptioner
    calls = []
    orig = BlipCaptioner.caption

    def counted(self, crops, seed=0):
        calls.append(seed)
        return orig(self, crops, seed=seed)

    monkeypatch.setattr(BlipCaptioner, 'caption', counted)
    return calls


def test_five_captions_per_box_from_context_crops(captioned, annotation_world, blip_dir):
    import mmcv

    from mmquerymeld.annotation.captioners import build_captioner
    from mmquerymeld.annotation.crops import context_box
    boxes = _load(annotation_world['box_json'])
    data, summary = captioned['data'], captioned['summary']
    n_boxes = len(boxes['annotations'])
    assert summary['images'] == len(boxes['images']) == 4
    assert summary['objects'] == n_boxes
    assert summary['kept'] + sum(summary['dropped'].values()) == n_boxes
    assert set(summary['dropped']) <= {'no_caption'}
    info = data['info']
    assert info['tool'] == 'caption_objects' and info['summary'] == summary
    cap_settings = info['settings']['captioner']
    assert cap_settings['num_return_sequences'] == 5 and cap_settings['do_sample'] is True
    assert cap_settings['top_p'] == 0.95 and cap_settings['temperature'] == 1.0
    assert info['settings']['margin'] == 0.3 and info['settings']['seed'] == 7
    recs = {r['id']: r for r in data['annotations']}
    assert len(recs) == summary['kept'] >= n_boxes - 2
    # the captions are the captioner's, on each box's context crop, seeded by the image id
    model = build_captioner(dict(type='blip', model_dir=blip_dir, max_new_tokens=6, top_p=0.95))
    images = {i['id']: i for i in boxes['images']}
    for img_id, img in images.items():
        anns = [a for a in boxes['annotations'] if a['image_id'] == img_id]
        rgb = mmcv.imread(osp.join(annotation_world['image_root'], img['file_name']),
                          channel_order='rgb')
        wins = [context_box(a['bbox'], img['width'], img['height'], 0.3) for a in anns]
        expect = model.caption([rgb[y0:y1, x0:x1] for x0, y0, x1, y1 in wins], seed=7 + img_id)
        for ann, win, caps in zip(anns, wins, expect):
            caps = [c for c in caps if c]
            if ann['id'] in recs:
                rec = recs[ann['id']]
                assert rec['captions'] == caps and 1 <= len(caps) <= 5
                assert rec['crop'] == list(win) and rec['image_id'] == img_id
                assert rec['bbox'] == [float(v) for v in ann['bbox']]
            else:
                assert caps == []


def test_output_loads_as_referring_source(captioned, annotation_world):
    from mmengine.config import Config

    import mmdet.datasets  # noqa: F401
    from mmquerymeld.datasets import MultiSourceDataset
    syn = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/synthetic_world.py'))
    det_root = osp.join(annotation_world['root'], 'detection')
    src = dict(name='engine_captions', task='referring',
               pipeline=copy.deepcopy(syn.syn_referring_train_pipeline),
               dataset=dict(type='BoxCaptionDataset', data_root=det_root,
                            ann_file='annotations/boxes_train.json',
                            caption_file=captioned['out'],
                            data_prefix=dict(img='images/train/'),
                            filter_cfg=dict(filter_empty_gt=True)))
    ds = MultiSourceDataset([src])
    recs = {r['id']: r['captions'] for r in captioned['data']['annotations']}
    caps_of_image = {}
    for r in captioned['data']['annotations']:
        caps_of_image.setdefault(r['image_id'], []).append(tuple(r['captions']))
    inner = ds.datasets[0]
    assert len(inner) == len(caps_of_image)
    for i in range(len(inner)):
        info = inner.get_data_info(i)
        got = sorted(tuple(inst['texts']) for inst in info['instances'])
        assert got == sorted(caps_of_image[info['img_id']])
    item = ds[0]
    sample = item['data_samples']
    assert sample.task == 'referring' and sample.source == 'engine_captions'
    all_caps = {c for caps in recs.values() for c in caps}
    assert len(sample.texts) == len(sample.gt_instances) >= 1
    assert set(sample.texts) <= all_caps
    assert not sample.gt_instances.mask_valid.any()  # no synthetic masks joined here


def test_rerun_skips_finished_images(captioned, annotation_world, blip_dir, tmp_path,
                                     monkeypatch):
    """A finished run reruns nothing; a run cut after 2 images captions exactly the other 2 and
    writes the same file as the uninterrupted run."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'caption_objects_tool', osp.join(REPO, 'tools/dataset_converters/caption_objects.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    calls = _count_calls(monkeypatch)
    out = str(tmp_path / 'captions_train.json')
    shutil.copy(captioned['out'], out)
    shutil.copy(captioned['out'] + '.journal', out + '.journal')
    argv = _args(annotation_world['box_json'], annotation_world['image_root'], out, blip_dir,
                 '--no-progress')
    summary = tool.main(argv)
    assert calls == [] and summary['images_processed'] == 0
    assert summary['images_resumed'] == 4
    assert _load(out)['annotations'] == captioned['data']['annotations']
    # cut the journal after the header and two images; the output goes too
    with open(out + '.journal', 'r', encoding='utf-8') as f:
        lines = f.readlines()
    done = [json.loads(ln)['image_id'] for ln in lines[1:3]]
    with open(out + '.journal', 'w', encoding='utf-8') as f:
        f.writelines(lines[:3])
    os.remove(out)
    summary = tool.main(argv)
    images = [i['id'] for i in _load(annotation_world['box_json'])['images']]
    assert sorted(s - 7 for s in calls) == sorted(set(images) - set(done))
    assert (summary['images_processed'], summary['images_resumed']) == (2, 2)
    assert _load(out)['annotations'] == captioned['data']['annotations']


def test_shards_and_merge_equal_one_run(captioned, annotation_world, blip_dir, tmp_path):
    from mmquerymeld.annotation.caption_objects import caption_objects
    cfg = dict(type='BlipCaptioner', model_dir=blip_dir, max_new_tokens=6, top_p=0.95)
    out = str(tmp_path / 'captions_train.json')
    for i in range(2):
        caption_objects(annotation_world['box_json'], annotation_world['image_root'], out, cfg,
                        margin=0.3, seed=7, shard=(i, 2), progress=False)
    summary = caption_objects(None, None, out, cfg, merge=2)
    assert _load(out)['annotations'] == captioned['data']['annotations']
    assert summary['images'] == 4 and summary['kept'] == captioned['summary']['kept']


def test_bad_input_is_counted_not_fatal(bad_split, blip_dir, tmp_path):
    from mmquerymeld.annotation.caption_objects import caption_objects
    out = str(tmp_path / 'captions_bad.json')
    cfg = dict(type='BlipCaptioner', model_dir=blip_dir, max_new_tokens=4, decoding='beam')
    summary = caption_objects(bad_split['box_json'], bad_split['image_root'], out, cfg,
                              progress=False)
    broken = bad_split['broken']
    dropped = summary['dropped']
    assert dropped['missing_image'] == broken['boxes'][broken['missing_image']]
    assert dropped['corrupt_image'] == broken['boxes'][broken['corrupt_image']]
    assert dropped['box_outside_image'] == 1 and dropped['zero_area_box'] == 1
    assert summary['images_failed'] == {'corrupt_image': 1, 'missing_image': 1}
    data = _load(out)
    ids = {r['id'] for r in data['annotations']}
    assert broken['box_outside_image'] not in ids and broken['zero_area_box'] not in ids
    img_ids = {r['image_id'] for r in data['annotations']}
    assert not img_ids & {broken['missing_image'], broken['corrupt_image']}
    assert summary['kept'] == len(ids) >= 1
    assert np.all([1 <= len(r['captions']) <= 5 for r in data['annotations']])
