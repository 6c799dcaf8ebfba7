"""Keep mmengine checkpoints loadable by ``torch.load(weights_only=True)``."""
from typing import Any, Dict

import numpy as np
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer

from mmdet.registry import HOOKS

_TAG = '__history_buffer__'


def to_builtin(obj: Any) -> Any:
    """Recursively turn numpy scalars / arrays inside dicts, lists and tuples into Python ones."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        return type(obj)((k, to_builtin(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_builtin(v) for v in obj)
    return obj


def history_buffer_to_plain(buffer: HistoryBuffer) -> Dict[str, Any]:
    """Plain-container form of a :class:`HistoryBuffer` (lists and numbers only)."""
    log_history, count_history = buffer.data
    return {_TAG: True, 'log_history': np.asarray(log_history).tolist(),
            'count_history': np.asarray(count_history).tolist(),
            'max_length': int(buffer.max_length)}


def plain_to_history_buffer(state: Dict[str, Any]) -> HistoryBuffer:
    """Inverse of :func:`history_buffer_to_plain`."""
    return HistoryBuffer(state['log_history'], state['count_history'], state['max_length'])


@HOOKS.register_module()
class WeightsOnlyCheckpointHook(Hook):
    """Write checkpoints that torch's ``weights_only`` unpickler accepts.

    ``HistoryBuffer.__getstate__`` pickles its class-level statistics methods through
    ``builtins.getattr``, which torch's ``weights_only`` unpickler (the default since torch 2.6)
    refuses, so mmengine 0.10.7 cannot resume from its own checkpoints. Allow-listing ``getattr``
    would defeat the unpickler's guard; instead this hook writes the buffers as lists before saving
    and rebuilds them right after loading (``after_load_checkpoint`` runs before the runner restores
    the message hub). Numpy scalars and arrays elsewhere in ``meta`` and the message hub (e.g. the
    ``eta`` runtime info) become Python numbers and lists, so a checkpoint holds nothing but tensors
    and plain containers and needs no allow-list. Checkpoints written without the hook fail to load
    with torch's error naming the refused global.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        hub = checkpoint.get('message_hub', {})
        scalars = hub.get('log_scalars', {})
        for key, value in list(scalars.items()):
            if isinstance(value, HistoryBuffer):
                scalars[key] = history_buffer_to_plain(value)
        if 'runtime_info' in hub:
            hub['runtime_info'] = to_builtin(hub['runtime_info'])
        if 'meta' in checkpoint:
            checkpoint['meta'] = to_builtin(checkpoint['meta'])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get('message_hub', {}).get('log_scalars', {})
        for key, value in list(scalars.items()):
            if isinstance(value, dict) and value.get(_TAG):
                scalars[key] = plain_to_history_buffer(value)
