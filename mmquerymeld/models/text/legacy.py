"""Configs and checkpoints of the former one-module text side (``OpenCLIPTextClassifier``).

Until the text side was split, one module held the CLIP text tower, the CoOp context, the
projection, the logit scale and the bias (``head.text_classifier.*``). It is now
:class:`~.text_encoder.OpenCLIPTextEncoder` (``head.text_encoder``) and
:class:`~.text_classifier.QueryTextClassifier` (``head.text_classifier``). These functions turn
the old config and state-dict layout into the new one.
"""
import copy
from typing import Any, Dict, Mapping, MutableMapping, Tuple

from mmengine.logging import print_log
from torch import nn

#: Type name of the former module.
LEGACY_TYPE = 'OpenCLIPTextClassifier'

#: Old argument -> new argument of the text encoder.
ENCODER_ARGS: Dict[str, str] = {
    'model_name': 'model_name',
    'pretrained': 'pretrained',
    'templates': 'templates',
    'task_templates': 'task_templates',
    'freeze_text_encoder': 'freeze_tower',
    'num_context_tokens': 'num_context_tokens',
    'chunk_size': 'chunk_size',
    'context_length': 'context_length',
    'synonym_sep': 'synonym_sep',
    'clean_names': 'clean_names',
    'cache_size': 'cache_size',
    'cache_dir': 'cache_dir',
}

#: Old arguments that keep their name in the classifier (``init_cfg`` goes there too: the old
#: module re-loaded its pretrained tower after it, so it only ever set the projection for good).
CLASSIFIER_ARGS = ('query_dims', 'prior_prob', 'init_logit_scale', 'max_logit_scale',
                   'learnable_logit_scale', 'normalize_queries', 'padding_logit', 'init_cfg')

#: Old state-dict names (relative to ``<prefix>text_classifier.``) -> new ones (relative to
#: ``<prefix>``). Longest match first; anything else under the old module is an error.
_KEY_RULES: Tuple[Tuple[str, str], ...] = (
    ('text_encoder.', 'text_encoder.tower.'),
    ('context_vectors', 'text_encoder.context_vectors'),
    ('query_proj.', 'text_classifier.query_proj.'),
    ('logit_scale', 'text_classifier.logit_scale'),
    ('logit_bias', 'text_classifier.logit_bias'),
)


def is_legacy_text_cfg(cfg: Any) -> bool:
    """Whether ``cfg`` is a config of the former ``OpenCLIPTextClassifier``."""
    return hasattr(cfg, 'get') and cfg.get('type') == LEGACY_TYPE


def split_legacy_text_cfg(cfg: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Split an ``OpenCLIPTextClassifier`` config into text-encoder and classifier configs.

    Args:
        cfg: ``dict(type='OpenCLIPTextClassifier', model_name=..., query_dims=..., ...)`` (the
            ``type`` may be absent).

    Returns:
        ``(encoder_cfg, classifier_cfg)``: ``dict(type='OpenCLIPTextEncoder', ...)`` and
        ``dict(type='QueryTextClassifier', ...)`` (deep copies; ``text_dims`` is left to the
        caller, it comes from the built encoder).

    Raises:
        TypeError: ``cfg`` names another type.
        KeyError: ``cfg`` holds an argument the former module did not have.
    """
    cfg = copy.deepcopy(dict(cfg))
    kind = cfg.pop('type', LEGACY_TYPE)
    if kind != LEGACY_TYPE:
        raise TypeError(f'split_legacy_text_cfg: expected type {LEGACY_TYPE!r}, got {kind!r}')
    encoder: Dict[str, Any] = dict(type='OpenCLIPTextEncoder')
    classifier: Dict[str, Any] = dict(type='QueryTextClassifier')
    for key, value in cfg.items():
        if key in ENCODER_ARGS:
            encoder[ENCODER_ARGS[key]] = value
        elif key in CLASSIFIER_ARGS:
            classifier[key] = value
        else:
            raise KeyError(f'split_legacy_text_cfg: {LEGACY_TYPE} has no argument {key!r}')
    return encoder, classifier


def has_legacy_text_keys(state_dict: Mapping[str, Any], prefix: str = '') -> bool:
    """Whether ``state_dict`` holds the former module's tower or context under ``prefix``."""
    old_root = prefix + 'text_classifier.'
    return any(k.startswith(old_root + 'text_encoder.') or k == old_root + 'context_vectors'
               for k in state_dict)


def remap_legacy_text_keys(state_dict: MutableMapping[str, Any],
                           prefix: str = '') -> MutableMapping[str, Any]:
    """Move the former text module's state-dict entries to the new layout, in place.

    ``<prefix>text_classifier.text_encoder.*`` (the tower) becomes
    ``<prefix>text_encoder.tower.*``, ``<prefix>text_classifier.context_vectors`` becomes
    ``<prefix>text_encoder.context_vectors``; the projection, logit scale and bias keep their
    names under ``<prefix>text_classifier.``. A state dict already in the new layout is returned
    unchanged. Key order is kept.

    Args:
        state_dict: Flat state dict, e.g. ``checkpoint['state_dict']`` of a QueryMeldNet.
        prefix: Path of the module that holds the text side, e.g. ``'head.'``.

    Returns:
        ``state_dict`` itself (modified).

    Raises:
        KeyError: An old key under ``<prefix>text_classifier.`` no rule covers, or a new key
            already present.
    """
    old_root = prefix + 'text_classifier.'
    if not has_legacy_text_keys(state_dict, prefix):
        return state_dict  # nothing of the old tower: already the new layout
    items = list(state_dict.items())
    renamed = []
    for key, value in items:
        if key.startswith(old_root):
            rest = key[len(old_root):]
            rule = next((r for r in _KEY_RULES if rest == r[0] or
                         (r[0].endswith('.') and rest.startswith(r[0]))), None)
            if rule is None:
                raise KeyError(f'remap_legacy_text_keys: no rule for {key!r}')
            key = prefix + rule[1] + rest[len(rule[0]):]
        renamed.append((key, value))
    new_keys = [k for k, _ in renamed]
    if len(set(new_keys)) != len(new_keys):
        raise KeyError('remap_legacy_text_keys: the state dict holds both the old and the new '
                       f'layout under {prefix!r}')
    state_dict.clear()
    state_dict.update(renamed)
    metadata = getattr(state_dict, '_metadata', None)
    if isinstance(metadata, MutableMapping):  # torch's per-module versions: same renaming
        old_tower = old_root + 'text_encoder'
        for path in [p for p in metadata if p == old_tower or p.startswith(old_tower + '.')]:
            metadata[prefix + 'text_encoder.tower' + path[len(old_tower):]] = metadata.pop(path)
    return state_dict


def legacy_text_keys_hook(module: nn.Module, state_dict: MutableMapping[str, Any], prefix: str,
                          *args: Any) -> None:
    """``load_state_dict`` pre-hook of a module holding ``text_encoder`` and ``text_classifier``
    (``QueryMeldHead``): a checkpoint of the former layout loads as is.

    Register it with ``module.register_load_state_dict_pre_hook(legacy_text_keys_hook)``; it runs
    before the module's children load (torch's and mmengine's ``load_state_dict`` alike) and
    calls :func:`remap_legacy_text_keys` with the module's prefix.
    """
    if has_legacy_text_keys(state_dict, prefix):
        remap_legacy_text_keys(state_dict, prefix)
        print_log(f'{prefix}text_classifier: checkpoint of the former {LEGACY_TYPE} remapped to '
                  f'{prefix}text_encoder + {prefix}text_classifier', logger='current')
