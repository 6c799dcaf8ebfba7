"""Heads of mmquerymeld: QueryMeldHead (mmdet's head shape), its query generator, its typed
outputs and the task post-processing module (pure per-task functions in ``postprocessing``)."""
from .outputs import EncoderProposals, QueryMeldHeadOutputs
from .post_processor import QueryMeldPostProcessor
from .query_generator import MatchingQueries, MeldQueryGenerator
from .querymeld_head import QueryMeldHead

__all__ = [
    'QueryMeldHead', 'QueryMeldHeadOutputs', 'EncoderProposals', 'QueryMeldPostProcessor',
    'MeldQueryGenerator', 'MatchingQueries'
]
