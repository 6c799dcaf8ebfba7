from .inference import QueryMeldInferencer

__all__ = ['QueryMeldInferencer']
