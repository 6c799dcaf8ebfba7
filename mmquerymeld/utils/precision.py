"""Precision helpers for mixed-precision training (autocast)."""
from typing import Any

import torch


def to_fp32(obj: Any) -> Any:
    """Cast every reduced-precision floating tensor in a nested structure to fp32.

    Dicts, lists and tuples are rebuilt (NamedTuples keep their type); fp32 / fp64 tensors,
    integer and bool tensors and any other object are returned as they are. Gradients flow
    through the casts.

    Args:
        obj: A tensor or a nested dict / list / tuple of them.

    Returns:
        The same structure with fp16 / bf16 tensors as fp32.
    """
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.dtype in (torch.float16, torch.bfloat16) else obj
    if isinstance(obj, dict):
        return type(obj)((k, to_fp32(v)) for k, v in obj.items())
    if isinstance(obj, tuple) and hasattr(obj, '_fields'):
        return type(obj)(*(to_fp32(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_fp32(v) for v in obj)
    return obj
