from .constants import INSTANCE_OFFSET, TASKS, QUERY_TYPES  # noqa: F401
from .setup_env import register_all_modules  # noqa: F401
from .text import clean_class_name  # noqa: F401
from .precision import to_fp32  # noqa: F401
from .atomic import atomic_open, atomic_write  # noqa: F401
