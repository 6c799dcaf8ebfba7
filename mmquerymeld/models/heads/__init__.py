"""Heads of mmquerymeld (post-processing functions live in ``heads.postprocessing``)."""
from .querymeld_head import QueryMeldHead

__all__ = ['QueryMeldHead']
