"""Pre-flight check of the pretrained weights a config starts from (run by tools/train.py).

The paper configs start from an ImageNet ResNet-50 (``torchvision://resnet50``, loaded by
mmengine's ``Pretrained`` init inside ``model.init_weights()``) and an open_clip text tower (loaded
when the text encoder is built). Without network access both fail deep inside torch.hub /
huggingface_hub with a message that names neither the file nor the config key. This check runs
before the Runner is built: it fetches each remote file into the cache mmengine / open_clip read
(so nothing is downloaded twice) and, when that fails, raises one error that lists, per weight,
the file to download and the config key to point at it.
"""
import os
import os.path as osp
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional
from urllib.parse import urlparse

import torch

#: Text-encoder types whose ``pretrained`` is an open_clip tag or file.
TEXT_ENCODER_TYPES = ('OpenCLIPTextEncoder', )


@dataclass
class PretrainedSource:
    """One pretrained weight a config asks for.

    Attributes:
        key: Its config key, e.g. ``'model.backbone.init_cfg.checkpoint'``.
        source: The value: a path, a URL, ``torchvision://<name>`` or an open_clip tag.
        model_name: open_clip architecture (text encoders only).
        cache_dir: open_clip download cache (text encoders only).
    """
    key: str
    source: str
    model_name: Optional[str] = None
    cache_dir: Optional[str] = None


def iter_pretrained_sources(node: Any, key: str = 'model') -> Iterator[PretrainedSource]:
    """Every ``Pretrained`` init checkpoint and text-encoder ``pretrained`` below ``node``.

    Args:
        node: A (nested) model config.
        key: Config key of ``node``.

    Yields:
        :class:`PretrainedSource` per weight, in config order.
    """
    if isinstance(node, dict):
        init = node.get('init_cfg')
        inits = init if isinstance(init, (list, tuple)) else [init]
        for i, cfg in enumerate(inits):
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' and cfg.get('checkpoint'):
                sub = f'{key}.init_cfg' + (f'.{i}' if isinstance(init, (list, tuple)) else '')
                yield PretrainedSource(f'{sub}.checkpoint', str(cfg['checkpoint']))
        node_type = str(node.get('type', '')).split('.')[-1]
        if node_type in TEXT_ENCODER_TYPES and node.get('pretrained'):
            yield PretrainedSource(f'{key}.pretrained', str(node['pretrained']),
                                   node.get('model_name', 'ViT-B-16'), node.get('cache_dir'))
        for name, value in node.items():
            if name != 'init_cfg':
                yield from iter_pretrained_sources(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from iter_pretrained_sources(value, f'{key}.{i}')


def checkpoint_url(source: str) -> Optional[str]:
    """URL of a remote ``Pretrained`` checkpoint (None for local paths and other schemes).

    Args:
        source: ``torchvision://<name>``, ``modelzoo://<name>`` or an http(s) URL.
    """
    if source.startswith(('torchvision://', 'modelzoo://')):
        from mmengine.runner.checkpoint import get_torchvision_models
        return get_torchvision_models()[source.split('://', 1)[1]]
    if source.startswith(('http://', 'https://')):
        return source
    return None


def _check_checkpoint(item: PretrainedSource) -> Optional[str]:
    """None when the checkpoint is (now) on disk, else what to do about it."""
    if '://' not in item.source:
        if osp.isfile(item.source):
            return None
        return f'{item.key}: file {item.source!r} does not exist'
    url = checkpoint_url(item.source)
    if url is None:  # open-mmlab://, s3://, ...: left to mmengine's loaders
        return None
    filename = osp.basename(urlparse(url).path)
    # where torch.hub.load_state_dict_from_url (mmengine's load_from_http) caches it
    cached = osp.join(torch.hub.get_dir(), 'checkpoints', filename)
    if osp.isfile(cached):
        return None
    try:
        os.makedirs(osp.dirname(cached), exist_ok=True)
        torch.hub.download_url_to_file(url, cached)  # a temporary file, renamed when complete
        return None
    except Exception as err:  # noqa: BLE001  URLError, HTTP errors, timeouts
        error = f'{type(err).__name__}: {err}'
    return (f'{item.key}={item.source!r}: cannot fetch {url} ({error}). Download it on a '
            f'machine with network access, then set {item.key}=/path/to/{filename} (or copy it '
            f'to {cached})')


def _check_text_tower(item: PretrainedSource) -> Optional[str]:
    """None when the open_clip weights are (now) on disk, else what to do about it."""
    from mmquerymeld.models.text.open_clip_utils import resolve_pretrained
    from mmquerymeld.models.text.pretrained_hints import text_tower_download_hint
    if osp.isfile(item.source):
        return None
    if '/' in item.source or '\\' in item.source:  # meant as a path
        return f'{item.key}: file {item.source!r} does not exist'
    try:  # a cached tag resolves without network access
        resolve_pretrained(item.model_name, item.source, item.cache_dir)
        return None
    except OSError as err:
        return (f'{item.key}={item.source!r}: {err}. '
                f'{text_tower_download_hint(item.model_name, item.source, item.key)}')


def check_pretrained_weights(cfg: Any) -> List[PretrainedSource]:
    """Make sure every pretrained weight of ``cfg.model`` is on disk, fetching it if needed.

    Args:
        cfg: The full config (``cfg.model`` is searched).

    Returns:
        The weights found (all available).

    Raises:
        FileNotFoundError: Some weight is missing and could not be fetched; the message lists,
            per weight, the file to download and the config key to set (``--cfg-options``).
    """
    items = list(iter_pretrained_sources(cfg.get('model', {})))
    problems = []
    for item in items:
        check = _check_text_tower if item.model_name is not None else _check_checkpoint
        problem = check(item)
        if problem:
            problems.append(problem)
    if problems:
        raise FileNotFoundError(
            'this config starts from pretrained weights that are not available (offline?):\n'
            + '\n'.join(f'  - {p}' for p in problems) +
            '\nSee the README, "Pretrained weights". To train from scratch instead, set the '
            'keys to None (the text tower then stays random: no open-vocabulary meaning).')
    return items
