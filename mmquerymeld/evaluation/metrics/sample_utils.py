"""Read the fields of an evaluation sample (docs/data_contract.md) uniformly.

mmengine's ``Evaluator`` hands metrics each data sample as a dict (``DetDataSample.to_dict()``:
metainfo keys and data fields side by side, nested data elements as dicts). The helpers here
also accept a ``DetDataSample`` itself, and turn masks of any mmdet flavour into tensors.
"""
from typing import Any, Callable, List, Optional, Sequence

import numpy as np
import torch
from mmengine.structures import BaseDataElement
from torch import Tensor

from mmquerymeld.utils.text import clean_class_name

_MISSING = object()


def as_dict(sample: Any) -> dict:
    """Return ``sample`` as a dict (``to_dict()`` for data elements, as mmengine's Evaluator).

    Args:
        sample: A dict or a ``BaseDataElement`` (e.g. ``DetDataSample``).

    Returns:
        The sample as a dict whose nested data elements are dicts too.
    """
    if isinstance(sample, BaseDataElement):
        return sample.to_dict()
    if isinstance(sample, dict):
        return sample
    raise TypeError(f'an evaluation sample must be a dict or a DetDataSample, got {type(sample)}')


def sample_name(sample: dict) -> str:
    """Identify a sample in error messages: its ``img_path``, else its ``img_id``."""
    return str(sample.get('img_path', sample.get('img_id', '<sample without img_path>')))


def get_field(sample: dict, path: str, metric: str, default: Any = _MISSING) -> Any:
    """Fetch a (possibly nested) field, e.g. ``'pred_panoptic_seg.sem_seg'``.

    Args:
        sample: The sample dict.
        path: Dot-separated field path.
        metric: Name of the calling metric, for the error message.
        default: Returned when the field is absent; if not given, a missing field raises.

    Returns:
        The field's value.

    Raises:
        KeyError: naming the sample's img_path and the field, when absent and no default.
    """
    node: Any = sample
    for part in path.split('.'):
        if isinstance(node, BaseDataElement):
            node = node.to_dict()
        if not isinstance(node, dict) or part not in node:
            if default is not _MISSING:
                return default
            raise KeyError(f'{metric}: sample {sample_name(sample)} has no field "{path}"')
        node = node[part]
    return node


def to_tensor(value: Any, sample: dict, field: str, metric: str) -> Tensor:
    """Turn a tensor / ndarray / ``BitmapMasks`` / ``PolygonMasks`` into a CPU tensor.

    Args:
        value: The field's value.
        sample: The sample dict (for the error message).
        field: The field's path (for the error message).
        metric: Name of the calling metric.

    Returns:
        A CPU tensor (masks: ``[N, H, W]``).
    """
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if hasattr(value, 'to_ndarray'):  # mmdet BitmapMasks / PolygonMasks
        return torch.from_numpy(np.asarray(value.to_ndarray()))
    if isinstance(value, (list, tuple)):
        return torch.as_tensor(np.asarray(value))
    raise TypeError(f'{metric}: sample {sample_name(sample)}: field "{field}" has unsupported '
                    f'type {type(value).__name__}')


def binary_masks(value: Any, sample: dict, field: str, metric: str,
                 shape: Optional[Sequence[int]] = None) -> Tensor:
    """Read a mask field as a bool tensor ``[N, H, W]``; floats are thresholded at 0.5.

    Args:
        value: The field's value.
        sample: The sample dict (for error messages).
        field: The field's path (for error messages).
        metric: Name of the calling metric.
        shape: Expected ``(H, W)``; a mismatch raises naming the sample.

    Returns:
        Bool tensor ``[N, H, W]``.
    """
    masks = to_tensor(value, sample, field, metric)
    if masks.dim() == 2:
        masks = masks[None]
    if masks.dim() != 3:
        raise ValueError(f'{metric}: sample {sample_name(sample)}: field "{field}" must be '
                         f'[N, H, W], got shape {tuple(masks.shape)}')
    masks = masks >= 0.5 if masks.is_floating_point() else masks.bool()
    if shape is not None and masks.shape[0] > 0 and tuple(masks.shape[-2:]) != tuple(shape):
        raise ValueError(f'{metric}: sample {sample_name(sample)}: field "{field}" has spatial '
                         f'shape {tuple(masks.shape[-2:])}, expected {tuple(shape)}')
    return masks


def check_shape(t: Tensor, shape: Sequence[int], sample: dict, field: str, metric: str) -> None:
    """Raise naming the sample and field when ``t.shape[-2:] != shape``."""
    if tuple(t.shape[-2:]) != tuple(shape):
        raise ValueError(f'{metric}: sample {sample_name(sample)}: field "{field}" has spatial '
                         f'shape {tuple(t.shape[-2:])}, expected {tuple(shape)} (the ground '
                         f"truth's)")


def class_lookup(classes: Sequence[str]) -> Callable[[str], Optional[int]]:
    """``text -> index into classes`` by exact name, else by prompt text.

    The pipelines turn class names into prompt text (``ToUnifiedTargets(clean_names=True)``:
    mmseg's ADE20K ``'bed '`` -> ``'bed'``, LVIS ``'aerosol_can'`` -> ``'aerosol can'``, COCO
    panoptic ``'tree-merged'`` -> ``'tree'``), so a sample's texts may be the cleaned form of
    ``dataset_meta['classes']``. A cleaned form shared by several classes matches none.

    Args:
        classes: The dataset's class names (C).

    Returns:
        A function giving the class index of a text, or None when it matches no class.
    """
    exact = {name: i for i, name in enumerate(classes)}
    cleaned: dict = {}
    for i, name in enumerate(classes):
        cleaned.setdefault(clean_class_name(str(name)), []).append(i)

    def lookup(text: str) -> Optional[int]:
        if text in exact:
            return exact[text]
        hits = cleaned.get(text, ())
        return hits[0] if len(hits) == 1 else None

    return lookup


def text_to_class_index(texts: Sequence[str], classes: Sequence[str], sample: dict,
                        metric: str) -> Tensor:
    """Map each of a sample's texts to its index in the dataset's ``classes``.

    Predictions index the sample's vocabulary ``metainfo['texts']``; dataset-level metrics
    (mmseg IoU, COCO AP) index ``dataset_meta['classes']``. When a test pipeline samples,
    reorders or cleans the vocabulary (see :func:`class_lookup`), this gives the translation.

    Args:
        texts: The sample's vocabulary (K).
        classes: The dataset's class names (C).
        sample: The sample dict (for error messages).
        metric: Name of the calling metric.

    Returns:
        Long tensor ``[K]`` of indices into ``classes``.
    """
    lookup = class_lookup(classes)
    index = [lookup(t) for t in texts]
    missing = [t for t, i in zip(texts, index) if i is None]
    if missing:
        raise KeyError(f'{metric}: sample {sample_name(sample)}: texts {missing[:5]} are not in '
                       f"dataset_meta['classes']")
    return torch.as_tensor(index, dtype=torch.long)


def same_vocabulary(texts: Optional[List[str]], classes: Optional[Sequence[str]]) -> bool:
    """True when a sample's texts are exactly the dataset's classes (or unknown)."""
    return texts is None or classes is None or list(texts) == list(classes)
