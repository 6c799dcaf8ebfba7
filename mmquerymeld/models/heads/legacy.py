"""Checkpoints of the first layout (before the head was split into mmdet's shape) load as is.

Two renamings happened in the restructure of the head:

- the text side: ``text_classifier.text_encoder.*`` (the open_clip tower) and
  ``text_classifier.context_vectors`` moved to ``text_encoder.*``
  (:func:`mmquerymeld.models.text.remap_legacy_text_keys`);
- the queries: ``learnable_content``, ``learnable_anchors`` and ``query_selector`` moved into
  ``query_generator`` (:class:`MeldQueryGenerator`).

:func:`legacy_head_keys_hook` is registered on :class:`QueryMeldHead` as a ``load_state_dict``
pre-hook, so ``tools/test.py``, ``--resume`` and ``load_checkpoint`` accept an old checkpoint
without a conversion step.
"""
from typing import Any, MutableMapping

from mmengine.logging import print_log
from torch import nn

from ..text import legacy_text_keys_hook

#: (old child name, new child name) of the head's own modules.
HEAD_KEY_RULES = (
    ('learnable_content', 'query_generator.learnable_content'),
    ('learnable_anchors', 'query_generator.learnable_anchors'),
    ('query_selector', 'query_generator.query_selector'),
)


def _rename(name: str, prefix: str) -> str:
    """New name of ``name`` (a state-dict key or a ``_metadata`` module path) under ``prefix``."""
    for old, new in HEAD_KEY_RULES:
        old_path = prefix + old
        if name == old_path or name.startswith(old_path + '.'):
            return prefix + new + name[len(old_path):]
    return name


def remap_legacy_head_keys(state_dict: MutableMapping[str, Any],
                           prefix: str = '') -> MutableMapping[str, Any]:
    """Move the first layout's query modules into ``query_generator``, in place.

    Args:
        state_dict: Flat state dict, e.g. ``checkpoint['state_dict']`` of a QueryMeldNet.
        prefix: Path of the head, e.g. ``'head.'``.

    Returns:
        ``state_dict`` itself (modified; key order kept). A state dict already in the new layout
        is returned unchanged.

    Raises:
        KeyError: The state dict holds a key in both layouts.
    """
    renamed = [(_rename(k, prefix), v) for k, v in state_dict.items()]
    if all(new == old for (new, _), old in zip(renamed, state_dict)):
        return state_dict
    if len({k for k, _ in renamed}) != len(renamed):
        raise KeyError('remap_legacy_head_keys: the state dict holds both the old and the new '
                       f'layout of the queries under {prefix!r}')
    metadata = getattr(state_dict, '_metadata', None)
    state_dict.clear()
    state_dict.update(renamed)
    if isinstance(metadata, MutableMapping):  # torch's per-module versions: same renaming
        for path in list(metadata):
            new_path = _rename(path, prefix)
            if new_path != path:
                metadata[new_path] = metadata.pop(path)
    return state_dict


def legacy_head_keys_hook(module: nn.Module, state_dict: MutableMapping[str, Any], prefix: str,
                          *args: Any) -> None:
    """``load_state_dict`` pre-hook of :class:`QueryMeldHead`: first-layout keys are renamed.

    Runs before the head's children load (torch's and mmengine's loaders alike).
    """
    legacy_text_keys_hook(module, state_dict, prefix, *args)
    if any(_rename(k, prefix) != k for k in state_dict):
        remap_legacy_head_keys(state_dict, prefix)
        print_log(f'{prefix}: learnable_content / learnable_anchors / query_selector of a '
                  f'former checkpoint remapped to {prefix}query_generator.*', logger='current')
