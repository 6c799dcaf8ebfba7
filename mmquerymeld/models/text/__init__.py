"""The open-vocabulary text side on open_clip (paper section 3.3).

Importing this package registers :class:`OpenCLIPTextEncoder` (texts -> unit-norm embeddings) and
:class:`QueryTextClassifier` (queries x text embeddings -> logits) in mmdet's ``MODELS``, and the
tiny architecture ``'QM-Tiny'`` in open_clip's model-config registry.
"""
from .embedding_cache import TextEmbeddingCache
from .legacy import legacy_text_keys_hook, remap_legacy_text_keys, split_legacy_text_cfg
from .open_clip_utils import (QM_TINY_CFG, QM_TINY_NAME, build_text_tower, load_text_tower_weights,
                              register_model_config, register_tiny_model)
from .prompts import PromptRules
from .templates import (DEFAULT_TASK_TEMPLATES, FOREGROUND_PROMPT, PHOTO_TEMPLATES, TEMPLATE_SETS,
                        clean_class_name, resolve_templates, split_synonyms)
from .text_classifier import QueryTextClassifier
from .text_encoder import OpenCLIPTextEncoder

register_tiny_model()

__all__ = [
    'OpenCLIPTextEncoder', 'QueryTextClassifier', 'split_legacy_text_cfg',
    'remap_legacy_text_keys', 'legacy_text_keys_hook', 'PromptRules', 'TextEmbeddingCache', 'QM_TINY_CFG', 'QM_TINY_NAME',
    'build_text_tower', 'load_text_tower_weights', 'register_model_config', 'register_tiny_model',
    'DEFAULT_TASK_TEMPLATES', 'FOREGROUND_PROMPT', 'PHOTO_TEMPLATES', 'TEMPLATE_SETS',
    'clean_class_name', 'resolve_templates', 'split_synonyms'
]
