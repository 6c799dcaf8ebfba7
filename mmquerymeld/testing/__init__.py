"""Test and demo fixtures: the synthetic world generator (see :mod:`.synthetic_world`).

Not imported by ``import mmquerymeld`` (a training run never needs it); import it explicitly::

    from mmquerymeld.testing import generate_synthetic_world
"""
from .language import object_captions, referring_sentences, unique_sentences
from .scenes import Scene, Thing, render_scene
from .synthetic_world import generate_synthetic_world
from .world_classes import (COLORS, FOREGROUND_PROMPT, LVIS_CLASSES, PC_CLASS_IDS, PC_NUM_CLASSES,
                            SEMANTIC_CLASSES, STUFF_CAT_IDS, STUFF_CLASSES, THING_CAT_IDS,
                            THING_CLASSES, pc459_classes)

__all__ = [
    'generate_synthetic_world', 'render_scene', 'Scene', 'Thing', 'referring_sentences',
    'unique_sentences', 'object_captions', 'THING_CLASSES', 'THING_CAT_IDS', 'STUFF_CLASSES',
    'STUFF_CAT_IDS', 'SEMANTIC_CLASSES', 'COLORS', 'LVIS_CLASSES', 'PC_NUM_CLASSES',
    'PC_CLASS_IDS', 'FOREGROUND_PROMPT', 'pc459_classes'
]
