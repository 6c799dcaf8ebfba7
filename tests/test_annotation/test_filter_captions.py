"""filter_captions end to end: captions of a tiny random BLIP on the synthetic world's box-only
split, scored by a QM-Tiny open_clip checkpoint on disk (subprocess), thresholded (pairs under the
threshold dropped, counts matching the scores), a histogram PNG, BoxCaptionDataset reading the
filtered file; re-thresholding reuses the scores; bad input counted."""
import copy
import json
import os.path as osp

import numpy as np
import pytest

from caption_test_models import (REPO, run_tool, summary_line, write_qm_tiny_clip,
                                 write_tiny_blip)

pytest.importorskip('transformers')

MARGIN = 0.3


def _load(path):
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp('models')
    return dict(blip=write_tiny_blip(str(root / 'blip')),
                clip=write_qm_tiny_clip(str(root / 'qm_tiny.pt')))


@pytest.fixture(scope='module')
def caption_file(annotation_world, models, tmp_path_factory):
    """caption_objects' output on the world (in-process; its subprocess run is tested apart)."""
    from mmquerymeld.annotation.caption_objects import caption_objects
    out = str(tmp_path_factory.mktemp('captions') / 'captions_train.json')
    caption_objects(annotation_world['box_json'], annotation_world['image_root'], out,
                    dict(type='BlipCaptioner', model_dir=models['blip'], max_new_tokens=6),
                    margin=MARGIN, seed=0, progress=False)
    return out


def _filter_args(caption_json, world, out, clip, threshold, *extra):
    return [caption_json, world['box_json'], world['image_root'], '--out', out, '--model',
            'QM-Tiny', '--pretrained', clip, '--threshold', str(threshold), *extra]


@pytest.fixture(scope='module')
def scored(caption_file, annotation_world, models, tmp_path_factory):
    """One subprocess run of tools/dataset_converters/filter_captions.py keeping every pair."""
    out = str(tmp_path_factory.mktemp('filtered') / 'captions_filtered.json')
    proc = run_tool('filter_captions',
                    _filter_args(caption_file, annotation_world, out, models['clip'], -1.0))
    from mmquerymeld.annotation.filter_captions import scores_path
    return dict(out=out, summary=summary_line(proc), scores=_load(scores_path(out)))


def _tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'filter_captions_tool', osp.join(REPO, 'tools/dataset_converters/filter_captions.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _red_pixels(png: str) -> int:
    import matplotlib.image as mpimg
    img = (mpimg.imread(png)[..., :3] * 255).round().astype(int)
    red = np.array([214, 39, 40])  # tab:red, the threshold line
    return int((np.abs(img - red).sum(-1) < 30).sum())


def test_scores_are_clip_scores_of_context_crops(scored, caption_file, annotation_world,
                                                  models):
    import mmcv

    from mmquerymeld.annotation.clip_filter import ClipScorer
    from mmquerymeld.annotation.crops import crop_boxes
    caps = {r['id']: r for r in _load(caption_file)['annotations']}
    recs = {r['id']: r for r in scored['scores']['annotations']}
    assert set(recs) == set(caps)
    assert scored['scores']['info']['settings']['margin'] == MARGIN  # the captioner's margin
    boxes = _load(annotation_world['box_json'])
    scorer = ClipScorer('QM-Tiny', models['clip'])
    for img in boxes['images']:
        anns = [a for a in boxes['annotations'] if a['image_id'] == img['id'] and a['id'] in caps]
        rgb = mmcv.imread(osp.join(annotation_world['image_root'], img['file_name']),
                          channel_order='rgb')
        crops, _ = crop_boxes(rgb, [a['bbox'] for a in anns], MARGIN)
        expect = scorer.score(crops, [caps[a['id']]['captions'] for a in anns])
        for ann, exp in zip(anns, expect):
            assert recs[ann['id']]['captions'] == caps[ann['id']]['captions']
            np.testing.assert_allclose(recs[ann['id']]['scores'], exp, atol=1e-4)
    summary = scored['summary']
    n_pairs = sum(len(r['captions']) for r in caps.values())
    assert summary['pairs'] == summary['pairs_kept'] == n_pairs  # threshold -1 keeps all
    assert summary['scoring']['images'] == 4 and summary['scoring']['images_processed'] == 4


def test_threshold_drops_pairs_under_it(scored, caption_file, annotation_world, models):
    """A new threshold re-filters from the journaled scores (no image scored again): the kept
    and dropped counts match the scores, the histogram marks the threshold."""
    all_scores = sorted(s for r in scored['scores']['annotations'] for s in r['scores'])
    thr = float(all_scores[len(all_scores) // 2])
    below = sum(s < thr for s in all_scores)
    assert 0 < below < len(all_scores)
    out = scored['out']
    summary = _tool().main(_filter_args(caption_file, annotation_world, out, models['clip'],
                                        thr, '--no-progress'))
    assert summary['scoring']['images_processed'] == 0  # scores reused
    assert summary['scoring']['images_resumed'] == 4
    assert summary['threshold'] == thr
    assert summary['pairs_dropped'] == below
    assert summary['pairs_kept'] == len(all_scores) - below
    filtered = _load(out)
    kept = {r['id']: r for r in filtered['annotations']}
    n_empty = 0
    for rec in scored['scores']['annotations']:
        good = [(c, s) for c, s in zip(rec['captions'], rec['scores']) if s >= thr]
        if not good:
            assert rec['id'] not in kept
            n_empty += 1
            continue
        assert kept[rec['id']]['captions'] == [c for c, _ in good]
        assert kept[rec['id']]['scores'] == [s for _, s in good]
    assert summary['objects_dropped'] == n_empty
    assert summary['objects_kept'] == len(kept)
    assert filtered['info']['settings']['threshold'] == thr
    hist = summary['histogram']
    with open(hist, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert _red_pixels(hist) > 50  # the threshold line is drawn
    # a threshold just above the lowest per-object best score drops that object entirely
    best = {r['id']: max(r['scores']) for r in scored['scores']['annotations']}
    gone = min(best, key=best.get)
    summary = _tool().main(_filter_args(caption_file, annotation_world, out, models['clip'],
                                        best[gone] + 1e-7, '--no-progress'))
    left = {r['id'] for r in _load(out)['annotations']}
    assert gone not in left and summary['objects_dropped'] >= 1
    assert summary['objects_kept'] == len(left) == sum(b > best[gone] for b in best.values())


def test_filtered_file_loads_through_box_caption_dataset(scored, annotation_world):
    from mmengine.config import Config

    import mmdet.datasets  # noqa: F401
    from mmquerymeld.datasets import MultiSourceDataset
    syn = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/synthetic_world.py'))
    det_root = osp.join(annotation_world['root'], 'detection')
    src = dict(name='engine_captions', task='referring',
               pipeline=copy.deepcopy(syn.syn_referring_train_pipeline),
               dataset=dict(type='BoxCaptionDataset', data_root=det_root,
                            ann_file='annotations/boxes_train.json',
                            syn_mask_file='annotations/synthetic_masks_train.json',
                            caption_file=scored['out'], data_prefix=dict(img='images/train/'),
                            filter_cfg=dict(filter_empty_gt=True)))
    ds = MultiSourceDataset([src])
    filtered = _load(scored['out'])['annotations']
    by_image = {}
    for r in filtered:
        by_image.setdefault(r['image_id'], []).append(tuple(r['captions']))
    inner = ds.datasets[0]
    assert len(inner) == len(by_image)
    for i in range(len(inner)):
        info = inner.get_data_info(i)
        assert sorted(tuple(x['texts']) for x in info['instances']) == \
            sorted(by_image[info['img_id']])
    sample = ds[0]['data_samples']
    assert sample.task == 'referring' and len(sample.texts) == len(sample.gt_instances) >= 1
    assert set(sample.texts) <= {c for r in filtered for c in r['captions']}
    assert sample.gt_instances.mask_valid.any()  # the synthetic masks are joined


def test_shards_and_merge_equal_one_run(scored, caption_file, annotation_world, models,
                                        tmp_path):
    from mmquerymeld.annotation.filter_captions import filter_captions
    out = str(tmp_path / 'filtered.json')
    kw = dict(model_name='QM-Tiny', pretrained=models['clip'], threshold=-1.0, progress=False)
    for i in range(2):
        filter_captions(caption_file, annotation_world['box_json'], annotation_world['image_root'],
                        out, shard=(i, 2), **kw)
    assert not osp.exists(out)  # a shard only scores
    summary = filter_captions(None, None, None, out, merge=2, **kw)
    one = _load(scored['out'].replace('.json', '.scores.json'))
    assert _load(out.replace('.json', '.scores.json'))['annotations'] == one['annotations']
    assert summary['pairs'] == scored['summary']['pairs']


def test_bad_input_is_counted_not_fatal(bad_split, caption_file, models, tmp_path):
    from mmquerymeld.annotation.filter_captions import filter_captions
    broken = bad_split['broken']
    data = _load(caption_file)
    extra = [dict(id=broken['box_outside_image'], captions=['a red circle']),
             dict(id=broken['zero_area_box'], captions=['a blue star']),
             dict(id=10 ** 9, captions=['a box of no image'])]
    caps = str(tmp_path / 'captions.json')
    with open(caps, 'w', encoding='utf-8') as f:
        json.dump(dict(info=data['info'], annotations=data['annotations'] + extra), f)
    out = str(tmp_path / 'filtered.json')
    summary = filter_captions(caps, bad_split['box_json'], bad_split['image_root'], out,
                              model_name='QM-Tiny', pretrained=models['clip'], threshold=-1.0,
                              progress=False)
    scoring = summary['scoring']
    captioned = {r['id'] for r in data['annotations']}
    boxes = _load(bad_split['box_json'])['annotations']

    def n_captioned(img_id):
        return sum(a['image_id'] == img_id and a['id'] in captioned for a in boxes)

    assert scoring['dropped']['missing_image'] == n_captioned(broken['missing_image'])
    assert scoring['dropped']['corrupt_image'] == n_captioned(broken['corrupt_image'])
    assert scoring['dropped']['box_outside_image'] == 1
    assert scoring['dropped']['zero_area_box'] == 1
    assert scoring['images_failed'] == {'corrupt_image': 1, 'missing_image': 1}
    assert summary['captions_without_box'] == 1
    ids = {r['id'] for r in _load(out)['annotations']}
    assert ids and not ids & {broken['box_outside_image'], broken['zero_area_box']}
    assert osp.isfile(summary['histogram'])
