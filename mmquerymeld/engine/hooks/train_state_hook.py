"""``TrainStateHook``: random-number states and the data position travel in the checkpoint."""
from mmengine.hooks import Hook

from mmdet.registry import HOOKS

from ..rng_state import capture_rng_state

#: Checkpoint keys written by :class:`TrainStateHook`.
RNG_KEY = 'rng_state'
DATA_KEY = 'data_position'


@HOOKS.register_module()
class TrainStateHook(Hook):
    """Save what an exact resume needs besides weights, optimizer and schedules.

    ``before_save_checkpoint`` adds ``checkpoint['rng_state']`` (python, numpy, torch, CUDA
    generators of this process, :mod:`mmquerymeld.engine.rng_state`) and, with
    :class:`~mmquerymeld.engine.loops.ResumableIterBasedTrainLoop`,
    ``checkpoint['data_position']`` (epoch of the sampler and batches consumed in it).
    ``after_load_checkpoint`` hands both to that loop, which restores the sampler position and
    then the generators right before the first resumed iteration (restoring them here would be
    too early: building the loader iterator and ``before_train`` hooks run in between). The
    loader workers need no state: their augmentation is reseeded per sample
    (:mod:`mmquerymeld.engine.seeding`).
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = capture_rng_state()
        loop = getattr(runner, '_train_loop', None)
        if hasattr(loop, 'data_position'):
            checkpoint[DATA_KEY] = loop.data_position()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        loop = getattr(runner, '_train_loop', None)
        if hasattr(loop, 'set_resume_state') and 'meta' in checkpoint:
            loop.set_resume_state(rng_state=checkpoint.get(RNG_KEY),
                                  data_position=checkpoint.get(DATA_KEY))
