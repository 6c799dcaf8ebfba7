"""mmquerymeld: QueryMeldNet as an OpenMMLab plugin. Importing it registers every module."""
from .version import __version__

__all__ = ['__version__']
