"""box2mask end to end (issue 13, item 1): segment-anything's own classes assembled small with
random weights saved by the test, loaded through the tool's checkpoint path, run on the
synthetic world's box-only split; output read by BoxCaptionDataset; kill / resume; shards +
merge; bad input."""
import importlib.util
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config
from pycocotools import mask as mask_utils

from mmquerymeld.annotation.box2mask import margin_window, masks_to_records
from mmquerymeld.annotation.box_predictors import BOX_PREDICTORS, build_sam_model, sam_arch
from mmquerymeld.annotation.runner import ImageJob, shard_path

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'dataset_converters', 'box2mask.py')
PROBE = osp.join(osp.dirname(osp.abspath(__file__)), 'box2mask_probe.py')
#: SAM at test size: 64 px input, 8 px patches, a 2-block encoder of width 32.
ARCH = dict(image_size=64, patch_size=8, window_size=4, encoder_embed_dim=32, encoder_depth=2,
            encoder_num_heads=2, encoder_global_attn_indexes=[1], prompt_embed_dim=32,
            mask_in_chans=4, decoder_mlp_dim=32, decoder_num_heads=2, iou_head_hidden_dim=16)
MARGIN = 0.05


def _tool_module():
    spec = importlib.util.spec_from_file_location('box2mask_tool', TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def sam_ckpt(tmp_path_factory):
    """Random SAM / HQ-SAM weights of :data:`ARCH`, saved with ``torch.save``."""
    root = tmp_path_factory.mktemp('sam_ckpt')
    out = {}
    for name, hq in (('sam', False), ('hq-sam', True)):
        torch.manual_seed(0)
        path = str(root / f'{name}.pth')
        torch.save(build_sam_model(sam_arch('vit_b', ARCH), hq=hq).state_dict(), path)
        out[name] = path
    return out


def _args(split, out, ckpt, *extra):
    return [split['box_json'], split['image_root'], '--out', out, '--checkpoint', ckpt,
            '--arch', json.dumps(ARCH), '--box-margin', str(MARGIN), '--min-area', '4',
            '--no-progress', *extra]


def _run_here(args):
    """The CLI's ``main`` in this process, single-threaded like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _tool_module().main(args)
    finally:
        torch.set_num_threads(threads)


def _env():
    return dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONPATH=REPO,
                BOX2MASK_PROBE_SLEEP='1.0')


def _load(path):
    with open(path, 'r', encoding='utf-8') as f:
        return json.load(f)


@pytest.fixture(scope='module')
def reference(annotation_world, sam_ckpt, tmp_path_factory):
    """One uninterrupted run over the world's box-only split: (output path, summary)."""
    out = str(tmp_path_factory.mktemp('b2m_ref') / 'masks.json')
    return out, _run_here(_args(annotation_world, out, sam_ckpt['sam']))


def test_masks_cut_to_box_margin_and_small_ones_dropped():
    masks = np.ones((3, 40, 50), bool)
    masks[1] = False
    masks[2] = False
    masks[2, 11, 11] = True
    anns = [dict(id=1, bbox=[10, 10, 20, 10]), dict(id=2, bbox=[0, 0, 5, 5]),
            dict(id=3, bbox=[10, 10, 5, 5])]
    job = ImageJob(7, 'a.jpg', 'a.jpg', 50, 40, anns)
    records, dropped = masks_to_records(job, masks, np.array([0.5, 0.6, 0.7]), 4, 0.1)
    assert dropped == {'empty_mask': 1, 'tiny_mask': 1}
    assert [r['id'] for r in records] == [1]
    got = mask_utils.decode(records[0]['segmentation']).astype(bool)
    exp = np.zeros((40, 50), bool)
    exp[9:21, 8:32] = True  # the box grown by 10% of its sides: x 8..32, y 9..21
    assert (got == exp).all() and records[0]['area'] == exp.sum()
    assert records[0]['bbox'] == [10.0, 10.0, 20.0, 10.0] and records[0]['score'] == 0.5
    assert margin_window([10, 10, 20, 10], 0.1, 50, 40) == (8, 9, 32, 21)


def test_checkpoint_loaded_and_boxes_batched_per_image(annotation_world, sam_ckpt, tmp_path):
    pred = BOX_PREDICTORS.build(dict(type='sam', checkpoint=sam_ckpt['sam'], arch=ARCH))
    saved = torch.load(sam_ckpt['sam'], weights_only=True)
    for k, v in pred.model.state_dict().items():
        assert torch.equal(v, saved[k]), k
    calls = {'encoder': [], 'decoder': []}
    pred.model.image_encoder.register_forward_hook(
        lambda m, i, o: calls['encoder'].append(i[0].shape[0]))
    pred.model.mask_decoder.register_forward_hook(
        lambda m, i, o: calls['decoder'].append(o[0].shape[0]))
    from mmquerymeld.annotation.box2mask import box2mask
    box2mask(annotation_world['box_json'], annotation_world['image_root'],
             str(tmp_path / 'm.json'), dict(type='sam', arch=ARCH), predictor_obj=pred,
             progress=False)
    data = _load(annotation_world['box_json'])
    per_image = [sum(a['image_id'] == i['id'] for a in data['annotations'])
                 for i in data['images']]
    assert calls['encoder'] == [1] * len(per_image)  # one encoder pass per image
    assert calls['decoder'] == per_image  # all boxes of an image in one prompt batch


def test_hq_sam_and_sam2_entries(sam_ckpt):
    pred = BOX_PREDICTORS.build(dict(type='hq-sam', checkpoint=sam_ckpt['hq-sam'], arch=ARCH))
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    masks, scores = pred.predict(rgb, np.array([[2, 2, 30, 20], [10, 5, 60, 40]], np.float32))
    assert masks.shape == (2, 48, 64) and masks.dtype == bool and scores.shape == (2, )
    assert {'sam', 'hq-sam', 'sam2'} <= set(BOX_PREDICTORS.module_dict)
    if importlib.util.find_spec('sam2') is None:
        with pytest.raises(ImportError, match='pip install sam2'):
            BOX_PREDICTORS.build(dict(type='sam2', checkpoint='x.pt', model_cfg='y.yaml'))


def test_output_loads_into_unified_targets_with_masks(annotation_world, reference):
    from mmquerymeld.datasets import MultiSourceDataset
    from mmquerymeld.utils import register_all_modules
    register_all_modules()
    out, summary = reference
    data = _load(out)
    assert data['info']['tool'] == 'box2mask' and data['info']['summary'] == summary
    recs = {r['id']: r for r in data['annotations']}
    boxes = _load(annotation_world['box_json'])['annotations']
    assert summary['images'] == summary['images_processed'] == 4
    assert summary['objects'] == len(boxes) == summary['kept'] + sum(summary['dropped'].values())
    assert len(recs) == summary['kept'] > 0
    for r in recs.values():  # every mask inside its box margin, area and source box kept
        m = mask_utils.decode(r['segmentation']).astype(bool)
        x1, y1, x2, y2 = margin_window(r['bbox'], MARGIN, m.shape[1], m.shape[0])
        assert m.sum() == r['area'] >= 4 and m[y1:y2, x1:x2].sum() == r['area']
    src = Config.fromfile(osp.join(REPO, 'configs/_base_/datasets/synthetic_world.py'))
    src = src.to_dict()['syn_detection_train']
    src['dataset'].update(data_root=annotation_world['root'] + '/', syn_mask_file=out)
    src['pipeline'] = [dict(type='SafeLoadImageFromFile'), dict(type='LoadQMAnnotations'),
                       dict(type='ToUnifiedTargets'), dict(type='PackQueryMeldInputs')]
    ds = MultiSourceDataset([src])
    with_mask = 0
    for i in range(len(ds)):
        gt = ds[i]['data_samples'].gt_instances
        valid = gt.mask_valid.numpy()
        masks = gt.masks.masks.astype(bool)
        assert all(m.any() for m in masks[valid]) and not masks[~valid].any()
        with_mask += int(valid.sum())
    assert with_mask == len(recs)


def _journal_lines(path):
    if not osp.isfile(path):
        return 0
    with open(path, 'rb') as f:
        return sum(1 for line in f.read().split(b'\n')[1:] if line.endswith(b'}'))


def test_kill_and_resume_processes_exactly_the_rest(annotation_world, sam_ckpt, reference,
                                                    tmp_path):
    out = str(tmp_path / 'masks.json')
    args = _args(annotation_world, out, sam_ckpt['sam'])
    proc = subprocess.Popen([sys.executable, PROBE, *args], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while _journal_lines(out + '.journal') < 2 and proc.poll() is None:
            assert time.time() < deadline, 'box2mask journaled nothing in 240 s'
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    done = _journal_lines(out + '.journal')
    assert 2 <= done < 4 and not osp.exists(out)
    rerun = subprocess.run([sys.executable, TOOL, *args], cwd=REPO, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert summary['images_resumed'] == done and summary['images_processed'] == 4 - done
    assert f'{done} of 4 images already done, {4 - done} to process' in rerun.stdout + rerun.stderr
    ref = _load(reference[0])
    assert _load(out)['annotations'] == ref['annotations']
    drop = ('seconds', 'images_per_second', 'images_processed', 'images_resumed')
    assert {k: v for k, v in summary.items() if k not in drop} == \
        {k: v for k, v in reference[1].items() if k not in drop}


def test_two_shards_and_merge_equal_one_process(annotation_world, sam_ckpt, reference, tmp_path):
    out = str(tmp_path / 'masks.json')
    for i in range(2):
        s = _run_here(_args(annotation_world, out, sam_ckpt['sam'], '--shard', f'{i}/2'))
        assert s['images'] == 2 and osp.isfile(shard_path(out, i, 2))
    merged = _run_here(_args(annotation_world, out, sam_ckpt['sam'], '--merge', '2'))
    a, b = _load(reference[0]), _load(out)
    assert a['annotations'] == b['annotations'] and a['info']['settings'] == b['info']['settings']
    drop = ('seconds', 'images_per_second')
    assert {k: v for k, v in merged.items() if k not in drop} == \
        {k: v for k, v in reference[1].items() if k not in drop}


def test_bad_input_counted_run_finishes(bad_split, sam_ckpt, tmp_path):
    out = str(tmp_path / 'masks.json')
    summary = _run_here(_args(bad_split, out, sam_ckpt['sam']))
    broken = bad_split['broken']
    assert summary['images_failed'] == {'missing_image': 1, 'corrupt_image': 1}
    for key in ('box_outside_image', 'zero_area_box'):
        assert summary['dropped'][key] == 1
    assert summary['dropped']['missing_image'] == broken['boxes'][broken['missing_image']]
    assert summary['objects'] == summary['kept'] + sum(summary['dropped'].values())
    data = _load(out)
    ids = {r['image_id'] for r in data['annotations']}
    assert broken['missing_image'] not in ids and broken['corrupt_image'] not in ids
    assert data['info']['summary'] == summary and summary['kept'] == len(data['annotations']) > 0


def test_model_libraries_imported_lazily():
    """Importing the engine's modules loads no model library beyond what ``import mmquerymeld``
    loads (mmpretrain imports transformers when it is installed)."""
    libs = '{"segment_anything", "segment_anything_hq", "sam2", "transformers", "open_clip"}'
    code = ('import sys\n'
            f'libs = lambda: {{m.split(".")[0] for m in sys.modules}} & {libs}\n'
            'import mmquerymeld\n'
            'base = libs()\n'
            'import mmquerymeld.annotation.box2mask, mmquerymeld.annotation.box_predictors\n'
            'print(sorted(libs() - base))\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]'
