"""Training criterion of QueryMeldNet (matching + class / box / mask losses)."""
from .querymeld_criterion import QueryMeldCriterion

__all__ = ['QueryMeldCriterion']
