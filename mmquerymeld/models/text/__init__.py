"""Open-vocabulary text classifier on open_clip (paper section 3.3).

Importing this package registers :class:`OpenCLIPTextClassifier` in mmdet's ``MODELS`` and the
tiny architecture ``'QM-Tiny'`` in open_clip's model-config registry.
"""
from .embedding_cache import TextEmbeddingCache
from .open_clip_utils import (QM_TINY_CFG, QM_TINY_NAME, build_text_tower, load_text_tower_weights,
                              register_model_config, register_tiny_model)
from .templates import (DEFAULT_TASK_TEMPLATES, FOREGROUND_PROMPT, PHOTO_TEMPLATES, TEMPLATE_SETS,
                        clean_class_name, resolve_templates, split_synonyms)
from .text_classifier import OpenCLIPTextClassifier

register_tiny_model()

__all__ = [
    'OpenCLIPTextClassifier', 'TextEmbeddingCache', 'QM_TINY_CFG', 'QM_TINY_NAME',
    'build_text_tower', 'load_text_tower_weights', 'register_model_config', 'register_tiny_model',
    'DEFAULT_TASK_TEMPLATES', 'FOREGROUND_PROMPT', 'PHOTO_TEMPLATES', 'TEMPLATE_SETS',
    'clean_class_name', 'resolve_templates', 'split_synonyms'
]
