"""Shared pytest fixtures."""
import json
import os
import os.path as osp
from typing import Dict

import numpy as np
import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _share_cores_between_workers() -> None:
    """Under pytest-xdist (tools/run_tests.sh), give each worker and the processes its tests
    start ``cores // workers`` threads, unless ``OMP_NUM_THREADS`` is set: N workers with all
    cores each oversubscribe the machine N times (OpenMP threads spin-waiting on each other)."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '0') or 0)
    if workers < 2 or 'OMP_NUM_THREADS' in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ['OMP_NUM_THREADS'] = str(threads)
    import torch
    torch.set_num_threads(threads)


_share_cores_between_workers()

#: Files whose tests take minutes (whole training / evaluation processes), slowest first. They
#: are collected before the rest, so under pytest-xdist they start at once on both workers and the
#: many short files fill in around them, instead of one of them running alone at the end.
SLOW_FIRST = (
    'test_tools/test_query_study.py', 'test_tools/test_packaging.py',
    'test_tools/test_kill_resume.py', 'test_tools/test_test_resume.py',
    'test_tools/test_train_resume_dist.py', 'test_tools/test_gpu_check.py',
    'test_tools/test_benchmark.py', 'test_annotation/test_box2mask.py',
    'test_tools/test_dist_train_grad.py', 'test_apis/test_inference.py',
    'test_tools/test_ddp_task_split.py', 'test_tools/test_check_dataset.py',
    'test_models/test_detectors/test_overfit.py', 'test_tools/test_train_nonfinite.py',
    'test_evaluation/test_multi_source_metric.py')


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the slow files first (a stable sort: every file's tests keep their order)."""
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    tests_dir = osp.join(REPO_ROOT, 'tests')
    items.sort(key=lambda item: rank.get(
        osp.relpath(str(item.fspath), tests_dir).replace(os.sep, '/'), len(rank)))


@pytest.fixture(autouse=True)
def no_user_text_cache(monkeypatch):
    """A user's on-disk text-embedding cache (``MMQM_TEXT_CACHE_DIR``) never reaches a test:
    tests that count text-tower calls would see its hits."""
    monkeypatch.delenv('MMQM_TEXT_CACHE_DIR', raising=False)


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT


def write_tiny_coco(root: str, num_images: int = 6, size: int = 64, seed: int = 0) -> Dict:
    """Write a tiny COCO-format detection dataset (squares and circles) under ``root``.

    Returns:
        The COCO dict written to ``root/annotations.json``.
    """
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        img = np.full((size, size, 3), 40, np.uint8)
        x0, y0 = (int(v) for v in rng.integers(4, size // 2, 2))
        w = int(rng.integers(12, size // 2 - 2))
        cat = int(i % 2) + 1
        if cat == 1:
            cv2.rectangle(img, (x0, y0), (x0 + w, y0 + w), (0, 0, 255), -1)
        else:
            cv2.circle(img, (x0 + w // 2, y0 + w // 2), w // 2, (255, 0, 0), -1)
        name = f'{i:04d}.png'
        cv2.imwrite(osp.join(root, 'images', name), img)
        images.append(dict(id=i + 1, file_name=name, height=size, width=size))
        anns.append(dict(id=i + 1, image_id=i + 1, category_id=cat, bbox=[x0, y0, w, w],
                         area=float(w * w), iscrowd=0,
                         segmentation=[[x0, y0, x0 + w, y0, x0 + w, y0 + w, x0, y0 + w]]))
    coco = dict(images=images, annotations=anns,
                categories=[dict(id=1, name='square'), dict(id=2, name='circle')])
    with open(osp.join(root, 'annotations.json'), 'w') as f:
        json.dump(coco, f)
    return coco


@pytest.fixture(scope='session')
def tiny_coco_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('tiny_coco'))
    write_tiny_coco(root)
    return root
