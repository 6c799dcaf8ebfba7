"""tools/misc/check_dataset.py on the synthetic world (real demo config, subprocess) and on damaged
copies of it: each damage is reported with its source, kind and path; unusable sources make the
exit status non-zero; the fix list leaves the bad samples out of the dataset."""
import contextlib
import importlib.util
import io
import json
import os
import os.path as osp
import pickle
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
TOOL = osp.join(REPO, 'tools', 'misc', 'check_dataset.py')
SYN = osp.join('data', 'synthetic')


@pytest.fixture(scope='module')
def clean_world(tmp_path_factory):
    """A folder holding data/synthetic (the config's relative data_root)."""
    from mmquerymeld.testing import generate_synthetic_world
    root = tmp_path_factory.mktemp('doctor_world')
    generate_synthetic_world(str(root / SYN), seed=0, num_train=5, num_val=4, img_size=96)
    return root


def _copy(clean_world, tmp_path):
    shutil.copytree(clean_world / SYN, tmp_path / SYN)
    return tmp_path


def _run(cwd, *args, timeout=600, in_process=False):
    """Run the tool on ``CFG`` from ``cwd``; returns ``(result with .returncode, output)``.

    ``in_process``: call the tool's ``main(argv)`` in this process (what ``python TOOL`` runs:
    ``sys.exit(main())``) instead of a new interpreter, which saves the ~15 s of imports of a
    process start; the CLI itself is run as a subprocess by the clean-world and damaged-copy
    tests.
    """
    argv = [CFG, '--no-progress', *args]
    if in_process:
        spec = importlib.util.spec_from_file_location('check_dataset_tool', TOOL)
        tool = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tool)
        buf, cwd_before = io.StringIO(), os.getcwd()
        os.chdir(str(cwd))
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                code = tool.main(argv)
        finally:
            os.chdir(cwd_before)
        return SimpleNamespace(returncode=code), buf.getvalue()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get('PYTHONPATH', '')]))
    env.setdefault('OMP_NUM_THREADS', '1')
    proc = subprocess.run([sys.executable, TOOL, *argv], cwd=str(cwd),
                          env=env, capture_output=True, text=True, timeout=timeout)
    return proc, proc.stdout + proc.stderr


def _report(cwd, *args, in_process=False):
    proc, out = _run(cwd, *args, '--report', 'report.json', in_process=in_process)
    with open(osp.join(cwd, 'report.json')) as f:
        return proc, out, {s['name']: s for s in json.load(f)['sources']}


def _has(src, kind, path_end, detail=''):
    hits = [i for i in src['issues'] if i['kind'] == kind and i['path'].endswith(path_end)
            and detail in i['detail']]
    assert hits, (kind, path_end, src['issues'])
    return hits[0]


def test_clean_world_is_usable(clean_world):
    for split, n in (('val', 6), ('train', 7)):
        # the val split through the command line, the train split through main() in-process
        proc, out, sources = _report(clean_world, '--split', split, '--workers', '1',
                                     in_process=split == 'train')
        assert proc.returncode == 0, out[-3000:]
        assert 'every source is usable' in out
        assert len(sources) == n
        for src in sources.values():
            assert src['unusable'] is None and src['num_samples'] > 0
            assert [i for i in src['issues'] if i['severity'] == 'error'] == [], src


def _json(path, fn):
    with open(path) as f:
        data = json.load(f)
    fn(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def _damage(root):
    """Damage one sample per case; returns {case: (source, file name)}."""
    s = root / SYN
    cases = {}
    # a truncated JPEG (box-only detection source)
    det = sorted(os.listdir(s / 'detection/images/val'))[1]
    data = (s / 'detection/images/val' / det).read_bytes()
    (s / 'detection/images/val' / det).write_bytes(data[:len(data) // 2])
    cases['truncated_jpeg'] = ('syn_o365_boxes', det)
    # a truncated PNG label map and a label value outside the 10-class vocabulary (ADE)
    ade = s / 'ade/ADEChallengeData2016/annotations/validation'
    maps = sorted(os.listdir(ade))
    data = (ade / maps[0]).read_bytes()
    (ade / maps[0]).write_bytes(data[:len(data) // 2])
    cases['truncated_png'] = ('syn_ade_semantic', maps[0].replace('.png', '.jpg'))
    seg = np.array(Image.open(ade / maps[1]))
    seg[:4, :4] = 200
    Image.fromarray(seg).save(ade / maps[1])
    cases['label_map_outside_vocabulary'] = ('syn_ade_semantic', maps[1].replace('.png', '.jpg'))
    # a missing panoptic PNG and a missing foreground mask
    pano = s / 'coco/annotations/panoptic_val2017'
    png = sorted(os.listdir(pano))[2]
    os.remove(pano / png)
    cases['missing_panoptic_png'] = ('syn_coco_panoptic', png.replace('.png', '.jpg'))

    # instances: box outside the image, zero-area box, collinear polygon (3 of 4 images)
    def edit(d):
        anns = sorted(d['annotations'], key=lambda a: a['id'])
        files = {i['id']: i['file_name'] for i in d['images']}
        used = []

        def pick():
            a = next(a for a in anns if a['image_id'] not in used and a.get('segmentation'))
            used.append(a['image_id'])
            return a, files[a['image_id']]
        a, f = pick()
        a['bbox'] = [200.0, 10.0, 20.0, 20.0]
        cases['box_outside_image'] = ('syn_coco_instance', f)
        a, f = pick()
        a['bbox'] = [10.0, 10.0, 0.0, 20.0]
        cases['zero_area_box'] = ('syn_coco_instance', f)
        a, f = pick()
        a['segmentation'] = [[1, 1, 5, 5, 9, 9]]
        cases['degenerate_mask'] = ('syn_coco_instance', f)
    _json(s / 'coco/annotations/instances_val2017.json', edit)

    def unknown_label(d):
        files = {i['id']: i['file_name'] for i in d['images']}
        a = next(a for a in d['annotations'] if files[a['image_id']] != det)
        a['category_id'] = 999
        cases['label_outside_vocabulary'] = ('syn_o365_boxes', files[a['image_id']])
    _json(s / 'detection/annotations/boxes_val.json', unknown_label)
    # an over-long referring expression (the tiny text tower's context: 77 tokens)
    refs_path = s / 'refcoco' / 'refs(unc).p'
    refs = pickle.loads(refs_path.read_bytes())
    ref = next(r for r in refs if r['split'] == 'val')
    long = ' '.join(['the small red circle left of the big blue square'] * 12)
    ref['sentences'][0]['sent'] = ref['sentences'][0]['raw'] = long
    refs_path.write_bytes(pickle.dumps(refs))
    with open(s / 'refcoco' / 'instances.json') as fh:
        imgs = {i['id']: i['file_name'] for i in json.load(fh)['images']}
    cases['text_too_long'] = ('syn_refcoco', imgs[ref['image_id']])
    return cases


KIND = dict(truncated_jpeg='image_unreadable', truncated_png='annotation_unreadable',
            label_map_outside_vocabulary='label_outside_vocabulary',
            missing_panoptic_png='missing_file',
            box_outside_image='box_outside_image', zero_area_box='degenerate_box',
            degenerate_mask='degenerate_mask', label_outside_vocabulary='label_outside_vocabulary',
            text_too_long='text_too_long')


def test_damaged_copy_reports_each_case_and_fix_list_excludes(clean_world, tmp_path):
    root = _copy(clean_world, tmp_path)
    cases = _damage(root)
    proc, out, sources = _report(root, '--split', 'val', '--fix-list', 'fix.json')
    # one bad sample in 2-4 is more than the default 10 %: those sources are unusable
    assert proc.returncode == 1, out[-3000:]
    for case, (source, fname) in cases.items():
        issue = _has(sources[source], KIND[case], fname)
        assert issue['severity'] == 'error', (case, issue)
        assert source in out and fname in out, case  # the printed report names both
        assert sources[source]['unusable'], source
    assert sources['syn_coco_instance']['unusable'].startswith('3/4 samples bad')

    # the fix list names every bad sample; the dataset leaves them out
    with open(root / 'fix.json') as f:
        fix = json.load(f)
    named = {(e['source'], osp.basename(e['path'])) for e in fix['exclude']}
    assert {(src, f) for src, f in cases.values()} <= named
    from mmengine.config import Config

    from mmquerymeld.datasets import MultiSourceDataset
    cfg = Config.fromfile(CFG)
    sources_cfg = cfg.val_dataloader.dataset.sources
    cwd = os.getcwd()
    os.chdir(root)
    try:
        full = MultiSourceDataset(sources_cfg)
        kept = MultiSourceDataset(sources_cfg, exclude_list='fix.json')
        assert len(full) - len(kept) == len(fix['exclude'])
        for name in kept.source_names:
            paths = [kept.get_data_info(i)['img_path'] for i in kept.source_slice(name)]
            for e in fix['exclude']:
                if e['source'] == name:
                    assert e['path'] not in paths
        # the remaining samples pass the checks: with the exclusions the world is usable again
        stale = [dict(fix['exclude'][0], path='elsewhere.jpg')]
        with pytest.raises(ValueError, match='stale'):
            MultiSourceDataset(sources_cfg, exclude_list=stale)
    finally:
        os.chdir(cwd)
    proc, out = _run(root, '--split', 'val', '--cfg-options',
                     'val_dataloader.dataset.exclude_list=fix.json', in_process=True)
    assert proc.returncode == 0, out[-3000:]


def test_missing_annotation_file_and_evaluator_class_mismatch(clean_world, tmp_path):
    root = _copy(clean_world, tmp_path)
    os.remove(root / SYN / 'coco' / 'annotations' / 'instances_val2017.json')
    # folder datasets pair images and masks at load time: a missing mask stops the source
    duts = root / SYN / 'salient/DUTS/DUTS-TE/DUTS-TE-Mask'
    mask = sorted(os.listdir(duts))[0]
    os.remove(duts / mask)
    # the box-only evaluator reads the LVIS-style vocabulary: other class names than the data's
    lvis = osp.join(SYN, 'lvis', 'lvis_v1_val.json')
    assert osp.isfile(root / lvis)
    proc, out, sources = _report(
        root, '--split', 'val', '--cfg-options',
        f'val_evaluator.0.metrics.syn_o365_boxes.ann_file={lvis}', in_process=True)
    assert proc.returncode == 1, out[-3000:]
    ins = sources['syn_coco_instance']
    assert ins['unusable'].startswith('cannot load') and 'instances_val2017.json' in \
        ins['unusable']
    box = sources['syn_o365_boxes']
    assert 'evaluator' in box['unusable']
    _has(box, 'class_mismatch', 'lvis_v1_val.json', 'only in evaluator')
    assert sources['syn_duts']['unusable'].startswith('cannot load') and mask in \
        sources['syn_duts']['unusable']
    others = [n for n in sources if n not in ('syn_coco_instance', 'syn_o365_boxes', 'syn_duts')]
    assert others and all(sources[n]['unusable'] is None for n in others)
    assert 'unusable sources' in out and 'syn_coco_instance' in out
