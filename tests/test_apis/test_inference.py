"""QueryMeldInferencer and tools/infer.py: any vocabulary at inference, every task."""
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmquerymeld.apis import QueryMeldInferencer

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(REPO, 'configs', '_base_', 'models', 'querymeld_tiny.py')


@pytest.fixture(scope='module')
def tiny_cfg() -> Config:
    cfg = Config.fromfile(TINY)
    cfg.default_scope = 'mmdet'
    cfg.infer_img_scale = (128, 128)
    return cfg


@pytest.fixture(scope='module')
def checkpoint(tiny_cfg, tmp_path_factory) -> str:
    """A random-init checkpoint saved to disk, as training would leave one."""
    inferencer = QueryMeldInferencer(tiny_cfg)
    path = str(tmp_path_factory.mktemp('ckpt') / 'tiny.pth')
    torch.save({'state_dict': inferencer.model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def image_file(tmp_path_factory) -> str:
    img = np.zeros((90, 120, 3), np.uint8)
    img[:30] = (235, 206, 135)  # sky band (BGR)
    cv2.circle(img, (40, 60), 15, (0, 0, 255), -1)
    cv2.rectangle(img, (75, 45), (105, 75), (255, 0, 0), -1)
    path = str(tmp_path_factory.mktemp('img') / 'scene.png')
    cv2.imwrite(path, img)
    return path


@pytest.fixture(scope='module')
def inferencer(tiny_cfg, checkpoint) -> QueryMeldInferencer:
    return QueryMeldInferencer(tiny_cfg, checkpoint)


def test_checkpoint_weights_are_loaded(tiny_cfg, checkpoint):
    a = QueryMeldInferencer(tiny_cfg, checkpoint)
    b = QueryMeldInferencer(tiny_cfg)  # another random init
    state = torch.load(checkpoint, map_location='cpu')['state_dict']
    key = next(k for k in state if k.startswith('head.') and state[k].dtype.is_floating_point
               and state[k].numel() > 16)
    assert torch.equal(a.model.state_dict()[key], state[key])
    assert not torch.equal(b.model.state_dict()[key], state[key])


@pytest.mark.parametrize('task,texts,flags,field', [
    ('semantic', ['red circle', 'blue square', 'sky'], None, 'pred_sem_seg'),
    ('instance', ['red circle', 'blue square'], None, 'pred_instances'),
    ('panoptic', ['red circle', 'blue square', 'sky'], [True, True, False], 'pred_panoptic_seg'),
    ('referring', ['the red circle on the left', 'the blue square'], None, 'pred_instances'),
    ('foreground', ['the most salient object'], None, 'pred_sem_seg'),
    ('detection', ['circle', 'square', 'a shape never seen in training'], None,
     'pred_instances'),
])
def test_every_task_any_vocabulary(inferencer, image_file, task, texts, flags, field):
    [sample] = inferencer(image_file, texts=texts, task=task, thing_flags=flags)
    assert sample.metainfo['texts'] == texts and sample.metainfo['task'] == task
    assert field in sample
    if field == 'pred_instances':
        pred = sample.pred_instances
        assert len(pred) > 0  # top-k (instance, detection) or one per expression (referring)
        assert int(pred.labels.max()) < len(texts)
        assert tuple(pred.masks.shape[-2:]) == (90, 120)
        if task == 'referring':  # one prediction per expression, in order
            assert pred.labels.tolist() == list(range(len(texts)))
    else:
        seg = getattr(sample, field).sem_seg
        assert tuple(seg.shape) == (1, 90, 120)  # original size, not the 128 px input
        if task == 'semantic':
            assert int(seg.max()) < len(texts)
        if task == 'foreground':
            assert set(seg.unique().tolist()) <= {0, 1}


def test_batch_of_arrays(inferencer, image_file):
    img = cv2.imread(image_file)
    flipped = img[:, ::-1].copy()
    samples = inferencer([img, flipped], texts=['circle', 'sky'], task='semantic')
    assert len(samples) == 2
    # each result is that image's own prediction, as a single-image call gives it
    for image, sample in zip((img, flipped), samples):
        [single] = inferencer(image, texts=['circle', 'sky'], task='semantic')
        assert sample.pred_sem_seg.sem_seg.shape == (1, 90, 120)
        assert torch.equal(sample.pred_sem_seg.sem_seg, single.pred_sem_seg.sem_seg)


@pytest.mark.parametrize('kwargs,match', [
    (dict(texts=[], task='semantic'), 'non-empty'),
    (dict(texts=['sky', ' '], task='semantic'), 'non-empty'),
    (dict(texts=['sky'], task='segment-anything'), 'task must be one of'),
    (dict(texts=['sky', 'circle'], task='panoptic'), 'thing_flags'),
    (dict(texts=['a', 'b'], task='foreground'), 'exactly one prompt'),
])
def test_bad_arguments_are_named(inferencer, image_file, kwargs, match):
    with pytest.raises(ValueError, match=match):
        inferencer(image_file, **kwargs)


def test_missing_files_are_named(tiny_cfg, inferencer, tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.png'):
        inferencer(str(tmp_path / 'nope.png'), texts=['sky'])
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        QueryMeldInferencer(tiny_cfg, str(tmp_path / 'missing.pth'))
    bad = tmp_path / 'bad.png'
    bad.write_bytes(b'not a png')
    with pytest.raises(ValueError, match='bad.png'):
        inferencer(str(bad), texts=['sky'])


def test_infer_tool_writes_overlay_and_json(tiny_cfg, checkpoint, image_file, tmp_path):
    cfg_file = tmp_path / 'tiny_cfg.py'
    tiny_cfg.dump(str(cfg_file))
    out_dir = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'infer.py'), str(cfg_file), checkpoint,
         image_file, '--texts', 'red circle', 'sky', '--task', 'semantic', '--out-dir',
         str(out_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    overlay = cv2.imread(str(out_dir / 'scene.png'))
    assert overlay is not None and overlay.shape[:2] == (90, 120)
    summary = json.loads((out_dir / 'results.json').read_text())
    assert summary[0]['image'] == image_file and summary[0]['task'] == 'semantic'
    assert set(summary[0]['pixels_per_text']) <= {'red circle', 'sky'}
    assert sum(summary[0]['pixels_per_text'].values()) == 90 * 120


def test_infer_tool_never_overwrites_inputs_or_other_overlays(tiny_cfg, checkpoint, image_file,
                                                              tmp_path):
    """Two images named alike in different folders, and --out-dir the first image's folder:
    each overlay gets its own file and the input image stays untouched."""
    cfg_file = tmp_path / 'tiny_cfg.py'
    tiny_cfg.dump(str(cfg_file))
    dir_a, dir_b = tmp_path / 'a', tmp_path / 'b'
    dir_a.mkdir()
    dir_b.mkdir()
    img_a, img_b = dir_a / 'scene.png', dir_b / 'scene.png'
    original = open(image_file, 'rb').read()
    img_a.write_bytes(original)
    cv2.imwrite(str(img_b), cv2.imread(image_file)[:, ::-1])
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'infer.py'), str(cfg_file), checkpoint,
         str(img_a), str(img_b), '--texts', 'circle', '--task', 'instance', '--out-dir',
         str(dir_a)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert img_a.read_bytes() == original
    summary = json.loads((dir_a / 'results.json').read_text())
    overlays = [s['overlay'] for s in summary]
    assert [s['image'] for s in summary] == [str(img_a), str(img_b)]
    assert overlays == [str(dir_a / 'scene_1.png'), str(dir_a / 'scene_2.png')]
    for path in overlays:
        assert cv2.imread(path).shape[:2] == (90, 120)
    bad = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'infer.py'), str(cfg_file), checkpoint,
         str(img_a), '--texts', 'a', 'b', '--task', 'panoptic', '--thing-flags', '1', '2'],
        capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and '--thing-flags' in bad.stderr
