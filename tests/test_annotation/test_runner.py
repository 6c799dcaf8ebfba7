"""The shared annotation loop: bad input counted, journal resume, shards + merge, atomic output
(issue 13, item 4). A fake ``process`` stands in for the models."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from mmquerymeld.annotation.runner import (box_problem, load_box_json, make_jobs, merge_shards,
                                           parse_shard, read_journal, run_images, shard_path)


class Recorder:
    """A ``process`` that returns one record per box (the image's mean colour as score) and
    remembers which images it saw."""

    def __init__(self):
        self.seen = []

    def __call__(self, job, rgb):
        assert rgb.dtype == np.uint8 and rgb.shape == (job.height, job.width, 3)
        self.seen.append(job.image_id)
        records = [dict(id=a['id'], image_id=job.image_id, score=float(rgb.mean()) / 255.0)
                   for a in job.anns[1:]]
        return records, ({'skipped_first': 1} if job.anns else {})


def _jobs(split):
    images, by_image, _ = load_box_json(split['box_json'])
    return make_jobs(images, by_image, split['image_root'])


def _load(path):
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


def test_box_checks():
    assert box_problem([1, 2, 3, 4], 10, 10) is None
    assert box_problem([8, 8, 5, 5], 10, 10) is None  # partly outside: kept (clipped by tools)
    assert box_problem([10, 2, 3, 3], 10, 10) == 'box_outside_image'
    assert box_problem([-5, 2, 5, 3], 10, 10) == 'box_outside_image'
    assert box_problem([1, 2, 0, 4], 10, 10) == 'zero_area_box'
    assert box_problem([1, 2, float('nan'), 4], 10, 10) == 'zero_area_box'
    assert box_problem([1, 2, 3], 10, 10) == 'zero_area_box'


def test_bad_input_counted_not_fatal(bad_split, tmp_path):
    jobs, dropped = _jobs(bad_split)
    broken = bad_split['broken']
    assert dropped == {'box_outside_image': 1, 'zero_area_box': 1}
    kept_ids = {a['id'] for j in jobs for a in j.anns}
    assert broken['box_outside_image'] not in kept_ids and broken['zero_area_box'] not in kept_ids
    proc = Recorder()
    out = str(tmp_path / 'out.json')
    summary = run_images('fake', jobs, out, proc, dict(a=1), progress=False)
    assert broken['missing_image'] not in proc.seen and broken['corrupt_image'] not in proc.seen
    assert summary['images'] == summary['images_processed'] == len(jobs)
    assert summary['images_failed'] == {'missing_image': 1, 'corrupt_image': 1}
    n = broken['boxes']
    assert summary['dropped']['missing_image'] == n[broken['missing_image']]
    assert summary['dropped']['corrupt_image'] == n[broken['corrupt_image']]
    assert summary['dropped']['box_outside_image'] == 1
    assert summary['dropped']['zero_area_box'] == 1
    assert summary['objects'] == sum(n.values())
    assert summary['objects'] == summary['kept'] + sum(summary['dropped'].values())
    data = _load(out)
    assert data['info']['tool'] == 'fake' and data['info']['settings'] == dict(a=1)
    assert data['info']['summary'] == summary
    ids = [r['id'] for r in data['annotations']]
    assert ids == sorted(ids) and len(ids) == summary['kept'] > 0


def test_resume_skips_journaled_images_and_a_torn_line(annotation_world, tmp_path):
    jobs, _ = _jobs(annotation_world)
    ref = str(tmp_path / 'ref.json')
    run_images('fake', jobs, ref, Recorder(), {}, progress=False)
    out = str(tmp_path / 'out.json')
    first = Recorder()
    # a run killed after 2 images: the journal holds 2 lines, the third is half written
    run_images('fake', jobs[:2], out, first, {}, progress=False)
    os.remove(out)
    with open(out + '.journal', 'a', encoding='utf-8') as f:
        f.write('{"image_id": %d, "records": [{"id"' % jobs[2].image_id)
    assert set(read_journal(out + '.journal')) == {j.image_id for j in jobs[:2]}
    again = Recorder()
    summary = run_images('fake', jobs, out, again, {}, progress=False)
    assert again.seen == [j.image_id for j in jobs[2:]]
    assert summary['images_processed'] == len(jobs) - 2 and summary['images_resumed'] == 2
    assert _load(out)['annotations'] == _load(ref)['annotations']
    # a rerun of a finished run processes nothing and rewrites the same annotations
    third = Recorder()
    assert run_images('fake', jobs, out, third, {}, progress=False)['images_processed'] == 0
    assert third.seen == [] and _load(out)['annotations'] == _load(ref)['annotations']


def test_resume_with_other_settings_refused(annotation_world, tmp_path):
    jobs, _ = _jobs(annotation_world)
    out = str(tmp_path / 'out.json')
    run_images('fake', jobs[:1], out, Recorder(), dict(min_area=4), progress=False)
    with pytest.raises(ValueError, match='min_area'):
        run_images('fake', jobs, out, Recorder(), dict(min_area=9), progress=False)


def test_corrupt_journal_middle_line_refused(tmp_path):
    path = str(tmp_path / 'x.journal')
    with open(path, 'w') as f:
        f.write('{"image_id": 1, "records": []}\n{broken\n{"image_id": 2, "records": []}\n')
    with pytest.raises(ValueError, match='line 2'):
        read_journal(path)


def test_two_shards_and_merge_equal_one_process(annotation_world, tmp_path):
    jobs, _ = _jobs(annotation_world)
    one = str(tmp_path / 'one.json')
    s1 = run_images('fake', jobs, one, Recorder(), dict(k=1), progress=False)
    out = str(tmp_path / 'sharded.json')
    seen = []
    for i in range(2):
        rec = Recorder()
        run_images('fake', jobs, out, rec, dict(k=1), shard=(i, 2), progress=False)
        assert rec.seen == [j.image_id for p, j in enumerate(jobs) if p % 2 == i]
        seen += rec.seen
        assert osp.isfile(shard_path(out, i, 2))
    assert sorted(seen) == sorted(j.image_id for j in jobs)
    assert not osp.exists(out)
    merged = merge_shards(out, 2)
    a, b = _load(one), _load(out)
    assert a['annotations'] == b['annotations'] and a['info']['settings'] == b['info']['settings']
    drop = ('seconds', 'images_per_second')
    assert {k: v for k, v in s1.items() if k not in drop} == \
        {k: v for k, v in merged.items() if k not in drop}
    with pytest.raises(FileNotFoundError, match=r'shard 2 of 3 is missing.*--shard 2/3'):
        run_images('fake', jobs, out, Recorder(), dict(k=1), shard=(0, 3), progress=False)
        run_images('fake', jobs, out, Recorder(), dict(k=1), shard=(1, 3), progress=False)
        merge_shards(out, 3)


def test_shard_spec(monkeypatch):
    assert parse_shard('1/4') == (1, 4)
    monkeypatch.setenv('RANK', '2')
    monkeypatch.setenv('WORLD_SIZE', '3')
    assert parse_shard(None) == (2, 3)
    assert parse_shard('0/1') == (0, 1)
    for bad in ('4/4', 'x', '1/0'):
        with pytest.raises(ValueError):
            parse_shard(bad)
    assert shard_path('a/b.json', 1, 4) == 'a/b.shard1of4.json'
    assert shard_path('a/b.json', 0, 1) == 'a/b.json'


def test_load_box_json_errors(tmp_path):
    path = str(tmp_path / 'b.json')
    with pytest.raises(FileNotFoundError, match='b.json'):
        load_box_json(path)
    with open(path, 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name='a.jpg', width=4)]), f)
    with pytest.raises(KeyError, match='height'):
        load_box_json(path)
    with open(path, 'w') as f:
        json.dump(dict(images=[dict(id=1, file_name='a.jpg', width=4, height=4)],
                       annotations=[dict(id=3, image_id=1)]), f)
    with pytest.raises(KeyError, match='bbox'):
        load_box_json(path)
