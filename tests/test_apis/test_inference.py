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
    """A random-init checkpoint saved to disk, as training would leave one. Seeded (without
    touching the global random stream), so the model does not depend on which tests ran before
    in the process: the tolerance tests below judge one fixed model on every machine."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
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


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two stacks of binary masks ``[N, H, W]`` -> ``[N]`` (1 where both are empty)."""
    a, b = a.bool().flatten(1), b.bool().flatten(1)
    union = (a | b).sum(1)
    return torch.where(union > 0, (a & b).sum(1) / union.clamp(min=1), torch.ones_like(
        union, dtype=torch.float))


def _scenes(image_file):
    """Three images of three sizes: landscape 90x120, portrait 120x90, square 64x64."""
    img = cv2.imread(image_file)
    return [img, np.ascontiguousarray(np.rot90(img)), cv2.resize(img, (64, 64))]


def test_batch_mixing_vocabularies_tasks_and_sizes(inferencer, image_file):
    """Every image of a batch gets its own vocabulary, task and size. Exactly comparable to a
    single-image call is the same image in the same input frame (the batch pads to 128x128 here;
    the single call gets pad_size=(128, 128)): equal up to float summation order (scores 1e-5,
    masks identical but for at most 0.1% of the pixels). In its own, smaller frame an image's
    prediction differs for real (the pixel decoder has no padding mask: group-norm statistics,
    normalised positions and sampling offsets all follow the frame), so that is not compared."""
    images = _scenes(image_file)
    texts = [['red circle', 'blue square', 'sky'], ['the red circle', 'the blue square'],
             ['circle', 'square', 'sky', 'triangle']]
    tasks = ['semantic', 'referring', 'instance']
    batch = inferencer(images, texts, tasks)
    shapes = {s.metainfo['img_shape'] for s in batch}
    assert len(shapes) == 3 and {s.metainfo['batch_input_shape'] for s in batch} == {(128, 128)}
    for image, vocab, task, got in zip(images, texts, tasks, batch):
        [single] = inferencer(image, vocab, task, pad_size=(128, 128))
        assert got.metainfo['texts'] == vocab and got.metainfo['task'] == task
        if task == 'semantic':
            assert got.pred_sem_seg.sem_seg.shape == (1, ) + image.shape[:2]
            assert torch.equal(got.pred_sem_seg.sem_seg, single.pred_sem_seg.sem_seg)
            continue
        pred, ref = got.pred_instances, single.pred_instances
        assert len(pred) == len(ref) > 0 and tuple(pred.masks.shape[-2:]) == image.shape[:2]
        assert ref.scores.std() > 1e-3 and ref.masks.any()  # not a degenerate comparison
        assert int(pred.labels.max()) < len(vocab)
        assert torch.equal(pred.labels, ref.labels)
        torch.testing.assert_close(pred.scores, ref.scores, atol=1e-5, rtol=0)
        differ = (pred.masks.bool() != ref.masks.bool()).float().mean()
        assert differ <= 1e-3
    with pytest.raises(ValueError, match='pad_size'):
        inferencer(images[0], texts[0], pad_size=(64, 64))


def test_per_image_arguments_are_checked(inferencer, image_file):
    img = cv2.imread(image_file)
    with pytest.raises(ValueError, match='texts: give one value for all images'):
        inferencer([img, img], [['sky'], ['sky'], ['sky']])
    with pytest.raises(ValueError, match='image 1: panoptic inference needs thing_flags'):
        inferencer([img, img], [['sky'], ['sky', 'circle']], ['semantic', 'panoptic'],
                   [None, [False]])
    [a, b] = inferencer([img, img], ['sky', 'circle'], ['semantic', 'panoptic'],
                        [None, [False, True]])
    assert 'pred_sem_seg' in a and 'pred_panoptic_seg' in b


def test_half_precision_matches_fp32(tiny_cfg, checkpoint, inferencer, image_file):
    """bf16 autocast on the CPU against fp32, on the random-init tiny model. Tolerances (bf16
    keeps 8 mantissa bits, ~0.4% per rounding): semantic / foreground maps agree on >= 98% of the
    pixels; each of the fp32 top-10 instances (and each referring expression's mask) has a bf16
    prediction of the same text with |score difference| <= 0.02 and mask IoU >= 0.85 (orders may
    swap between near-equal scores). The deformable attention ran in fp32, the rest in bf16."""
    half = QueryMeldInferencer(tiny_cfg, checkpoint, half=True)
    dtypes = {}
    decoder_layer = half.model.head.decoder.layers[0]
    def record(name):
        def hook(module, args, out) -> None:
            dtypes.setdefault(name, out.dtype)
        return hook

    hooks = [m.register_forward_hook(record(k))
             for k, m in (('msda', decoder_layer.cross_attn.value_proj),
                          ('ffn', decoder_layer.ffn.layers[0][0]))]
    differs = False
    for task, texts in (('semantic', ['red circle', 'blue square', 'sky']),
                        ('foreground', ['the most salient object']),
                        ('instance', ['circle', 'square', 'sky']),
                        ('referring', ['the red circle', 'the blue square'])):
        [ref] = inferencer(image_file, texts, task)
        [low] = half(image_file, texts, task)
        if task in ('semantic', 'foreground'):
            agree = (ref.pred_sem_seg.sem_seg == low.pred_sem_seg.sem_seg).float().mean()
            assert agree >= 0.98, (task, agree)
            continue
        pred, low_pred = ref.pred_instances, low.pred_instances
        assert low_pred.scores.dtype == torch.float32
        differs = differs or not torch.equal(pred.scores, low_pred.scores)
        for i in range(min(10, len(pred))):
            same_text = low_pred.labels == pred.labels[i]
            close = (low_pred.scores - pred.scores[i]).abs() <= 0.02
            iou = _mask_iou(low_pred.masks, pred.masks[i:i + 1].expand_as(low_pred.masks))
            assert bool((same_text & close & (iou >= 0.85)).any()), (task, i)
    for hook in hooks:
        hook.remove()
    assert differs, 'half=True computed exactly what fp32 computes: autocast was not active'
    assert dtypes == {'msda': torch.float32, 'ffn': torch.bfloat16}


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
         str(out_dir), '--half', '--text-cache-dir', str(tmp_path / 'text_cache')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # --text-cache-dir: the vocabulary's embeddings were written for the next call
    assert len(list((tmp_path / 'text_cache').glob('*/*.qmtc.pt'))) == 1
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
