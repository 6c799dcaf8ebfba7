"""mmquerymeld: QueryMeldNet as an OpenMMLab plugin.

Importing the package registers every module in mmdet's registries (configs use
``default_scope='mmdet'`` and ``custom_imports=dict(imports=['mmquerymeld'])``).
"""
from .version import __version__

from . import apis, datasets, engine, evaluation, models, visualization  # noqa: E402,F401

__all__ = ['__version__']
