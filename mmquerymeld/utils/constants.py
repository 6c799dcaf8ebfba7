"""Constants shared by data, model and evaluation (see docs/data_contract.md)."""
from mmdet.evaluation.functional import INSTANCE_OFFSET  # noqa: F401  (1000, mmdet convention)

#: The tasks every sample is tagged with (metainfo['task']); paper section 3.3.
TASKS = ('semantic', 'instance', 'panoptic', 'referring', 'foreground', 'detection')

#: Values of ``pred_instances.query_types``: which query set produced a prediction.
QUERY_TYPES = {'learnable': 0, 'conditional': 1, 'denoising': 2}
