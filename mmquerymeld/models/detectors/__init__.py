"""Detectors of mmquerymeld."""
from .querymeld import QueryMeldNet

__all__ = ['QueryMeldNet']
