from .constants import INSTANCE_OFFSET, TASKS, QUERY_TYPES  # noqa: F401
from .setup_env import register_all_modules  # noqa: F401
