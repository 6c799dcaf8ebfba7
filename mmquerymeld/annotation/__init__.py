"""The synthetic data engine (paper section 3.4): annotation tools for box-only data.

``box2mask`` (box-prompted masks), ``caption_objects`` and ``filter_captions`` share the loop of
:mod:`.runner`. Nothing here is imported by ``import mmquerymeld``, and the model libraries
(``segment_anything``, ``transformers``, ``open_clip``) are imported only when a tool builds its
model. Submodules are loaded on first attribute access.
"""
import importlib

_SUBMODULES = ('runner', 'box_predictors', 'box2mask', 'captioners', 'crops', 'clip_filter',
               'caption_objects', 'filter_captions')


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f'{__name__}.{name}')
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = list(_SUBMODULES)
