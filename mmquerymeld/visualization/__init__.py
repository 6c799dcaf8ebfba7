from .local_visualizer import QueryMeldLocalVisualizer
from .visualization_hook import QueryMeldVisualizationHook

__all__ = ['QueryMeldLocalVisualizer', 'QueryMeldVisualizationHook']
