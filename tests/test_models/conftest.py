"""Fixtures for the QueryMeldNet model tests: the tiny config and synthetic samples."""
import copy
import os.path as osp
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY_CFG = osp.join(REPO_ROOT, 'configs', '_base_', 'models', 'querymeld_tiny.py')

PANOPTIC_TEXTS = ['red square', 'blue circle', 'sky', 'grass']
THING_FLAGS = [True, True, False, False]


def synthetic_scene(size: int = 64, seed: int = 0) -> Tuple[np.ndarray, List[np.ndarray]]:
    """A BGR image with two stuff bands (sky, grass) and two things (square, circle).

    Returns:
        tuple: image ``[H, W, 3]`` uint8 and masks (square, circle, sky, grass) ``[H, W]`` bool,
        mutually exclusive.
    """
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[:h, :w]
    sky = yy < int(0.3 * h)
    grass = yy >= int(0.72 * h)
    s = int(0.28 * size)
    x0 = int(rng.integers(2, w // 2 - s))
    y0 = int(0.22 * h)
    square = (yy >= y0) & (yy < y0 + s) & (xx >= x0) & (xx < x0 + s)
    r = int(0.15 * size)
    cx, cy = int(0.72 * w), int(0.55 * h)
    circle = (yy - cy)**2 + (xx - cx)**2 <= r * r
    sky &= ~(square | circle)
    grass &= ~(square | circle)
    img = np.full((h, w, 3), 120, np.uint8)
    img[sky] = (235, 206, 135)
    img[grass] = (34, 139, 34)
    img[square] = (0, 0, 230)
    img[circle] = (230, 40, 0)
    return img, [square, circle, sky, grass]


def mask_to_box(mask: np.ndarray) -> List[float]:
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def make_sample(task: str = 'panoptic', size: int = 64, seed: int = 0,
                box_only: bool = False) -> Dict[str, object]:
    """One packed sample (``inputs`` uint8 ``[3, H, W]``, ``data_samples`` DetDataSample)
    following docs/data_contract.md, for any task."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData

    img, masks = synthetic_scene(size, seed)
    thing_flags = None
    if task in ('panoptic', 'semantic', 'instance', 'detection'):
        texts = list(PANOPTIC_TEXTS)
        thing_flags = list(THING_FLAGS)
        keep = [0, 1] if task in ('instance', 'detection') else [0, 1, 2, 3]
        labels = keep
    elif task == 'referring':
        texts = ['the red square on the left', 'the blue circle on the right']
        keep, labels = [0, 1], [0, 1]
    elif task == 'foreground':
        texts = ['foreground']
        masks = [masks[0] | masks[1]]
        keep, labels = [0], [0]
    else:
        raise ValueError(task)
    gt_masks = np.stack([masks[i] for i in keep]).astype(np.uint8)
    boxes = torch.tensor([mask_to_box(m) for m in gt_masks], dtype=torch.float32)
    mask_valid = torch.full((len(keep), ), not (box_only or task == 'detection'))
    if not bool(mask_valid.all()):
        gt_masks = np.zeros_like(gt_masks)
    meta = dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size),
                scale_factor=(1.0, 1.0), img_id=seed, img_path=f'synthetic_{seed}.png',
                texts=texts, task=task, source='synthetic')
    if thing_flags is not None:
        meta['thing_flags'] = thing_flags
    sample = DetDataSample(metainfo=meta)
    sample.gt_instances = InstanceData(
        bboxes=boxes, labels=torch.tensor(labels, dtype=torch.long),
        masks=BitmapMasks(gt_masks, size, size), mask_valid=mask_valid)
    if task in ('semantic', 'foreground'):
        sem = np.full((size, size), 255, np.int64)
        for m, lab in zip(gt_masks, labels):
            sem[m.astype(bool)] = lab
        if task == 'foreground':
            sem[sem == 255] = 1
            sem = 1 - sem  # foreground 1, background 0
        sample.gt_sem_seg = PixelData(sem_seg=torch.from_numpy(sem)[None])
    inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    return dict(inputs=inputs, data_samples=sample)


def collate(samples: List[Dict[str, object]]) -> Dict[str, list]:
    return dict(inputs=[s['inputs'] for s in samples],
                data_samples=[s['data_samples'] for s in samples])


def tiny_model_cfg(**head_overrides):
    """The tiny model config (a fresh ConfigDict), head keys overridden."""
    from mmengine.config import Config
    cfg = Config.fromfile(TINY_CFG)
    model = copy.deepcopy(cfg.model)
    model.head.update(head_overrides)
    return model


def build_tiny_model(seed: int = 0, **head_overrides):
    """Build and initialise the tiny model (CPU, random weights)."""
    from mmdet.registry import MODELS
    from mmquerymeld.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(seed)
    model = MODELS.build(tiny_model_cfg(**head_overrides))
    model.init_weights()
    return model


@pytest.fixture(scope='session')
def make_batch() -> Callable[..., Dict[str, list]]:
    """``make_batch(tasks=('panoptic',), size=64, box_only=())`` -> collated raw batch."""

    def _make(tasks=('panoptic', ), size: int = 64, box_only=(), seeds: Optional[list] = None):
        seeds = seeds or list(range(len(tasks)))
        return collate([make_sample(t, size, s, box_only=i in box_only)
                        for i, (t, s) in enumerate(zip(tasks, seeds))])

    return _make


@pytest.fixture(scope='session')
def tiny_model():
    """``tiny_model(**head_overrides)`` -> built tiny QueryMeldNet."""
    return build_tiny_model


@pytest.fixture
def single_thread():
    """Run a test with one intra-op thread (2-core CI machines shared by parallel jobs: OpenMP
    spinning with oversubscribed threads is ~10x slower than one thread for these tiny models)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def overfit_steps(model, data: Dict[str, list], iters: int) -> List[float]:
    """Train ``model`` on one preprocessed batch for ``iters`` AdamW steps (lr 1e-3, no decay,
    gradient norm clipped at 1); returns the total loss of every step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    history = []
    for _ in range(iters):
        losses = model.loss(data['inputs'], data['data_samples'])
        total = sum(v for k, v in losses.items() if 'loss' in k)
        optim.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        history.append(total.item())
    return history


@pytest.fixture(scope='session')
def overfit():
    """``overfit(model, preprocessed_batch, iters)`` -> per-step total losses."""
    return overfit_steps
