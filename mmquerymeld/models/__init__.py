"""Models of mmquerymeld; importing registers them in mmdet's MODELS / TASK_UTILS registries."""
from .detectors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .task_modules import *  # noqa: F401,F403
from .text import *  # noqa: F401,F403
