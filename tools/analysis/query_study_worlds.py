"""The worlds of the query study (issue 11): generating them, and the --cfg-options that point a
config's training or test sources at a world other than its own (same classes and formats, other
scenes or another scene style)."""
from __future__ import annotations

import json
import logging
import os.path as osp
from typing import List

logger = logging.getLogger('query_study')


def ensure_world(data_root: str, **kwargs) -> None:
    """Generate the synthetic world as tools/run_demo.sh does (``kwargs``: other
    ``generate_synthetic_world`` settings), if it is missing.

    Raises:
        ValueError: ``data_root`` holds a world of another style than ``kwargs['style']``, or
            with another number of train images than ``kwargs['num_train']`` (when given).
    """
    info_path = osp.join(data_root, 'world_info.json')
    if osp.isfile(info_path):
        with open(info_path) as f:
            info = json.load(f)
        found, found_train = info.get('style', 'default'), info.get('num_train')
        wanted = kwargs.get('style', 'default')
        if found != wanted:
            raise ValueError(f"{info_path}: a '{found}' world, not the '{wanted}' one this "
                             'study asks for; pass another --data-root / --eval-world')
        if kwargs.get('num_train') not in (None, found_train):
            raise ValueError(f"{info_path}: {found_train} train images per family, not the "
                             f"{kwargs['num_train']} asked for; pass another --data-root")
        return
    logger.info('generating the synthetic world in %s %s', data_root, kwargs or '')
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(data_root, **{'seed': 0, **kwargs})


def config_data_root(config: str) -> str:
    """The world ``config`` reads (its ``data_root`` variable)."""
    from mmengine.config import Config
    return str(Config.fromfile(config).get('data_root', 'data/synthetic/'))


def reroot_options(config: str, section: str, old_root: str, new_root: str) -> List[str]:
    """--cfg-options moving every path under ``old_root`` in ``config[section]`` (a dataloader
    or an evaluator) to ``new_root``: a world with the same classes and formats, other scenes.

    Raises:
        ValueError: a source of a dataloader section reads outside ``old_root`` (named).
    """
    from mmengine.config import Config
    old, new = old_root.rstrip('/') + '/', new_root.rstrip('/') + '/'
    cfg = Config.fromfile(config)
    if section.endswith('dataloader'):
        for i, source in enumerate(cfg[section].dataset.sources):
            root = source['dataset'].get('data_root', '')
            if not root.startswith(old):
                split = section.split('_')[0]
                raise ValueError(f'{config}: {split} source {i} ({source.get("name")}) reads '
                                 f'{root!r}, not under {old!r}')
    options: List[str] = []

    def walk(node, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f'{key}.{k}')
        elif isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                walk(v, f'{key}.{i}')
        elif isinstance(node, str) and node.startswith(old):
            options.append(f'{key}={new + node[len(old):]}')

    walk(cfg[section], section)
    return options


def eval_world_options(config: str, data_root: str, eval_root: str) -> List[str]:
    """--cfg-options pointing every test source of ``config`` and every file its test evaluator
    reads (COCO ``ann_file`` s) from ``data_root`` to ``eval_root``; training is untouched."""
    return (reroot_options(config, 'test_dataloader', data_root, eval_root)
            + reroot_options(config, 'test_evaluator', data_root, eval_root))


def train_world_options(config: str, data_root: str) -> List[str]:
    """--cfg-options training on the world in ``data_root`` instead of the config's own (none
    when they are the same folder)."""
    own = config_data_root(config)
    if osp.normpath(own) == osp.normpath(data_root):
        return []
    return reroot_options(config, 'train_dataloader', own, data_root)
