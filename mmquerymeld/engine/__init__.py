from .atomic_backend import AtomicLocalBackend
from .hooks import *  # noqa: F401,F403
from .loops import ResumableIterBasedTrainLoop, TrackedInfiniteIterator
from .optimizers import *  # noqa: F401,F403
from .pretrained_check import check_pretrained_weights, iter_pretrained_sources
