from .atomic_checkpoint_hook import AtomicCheckpointHook
from .nonfinite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .train_state_hook import TrainStateHook
from .weights_only_checkpoint_hook import WeightsOnlyCheckpointHook

__all__ = ['AtomicCheckpointHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'TrainStateHook',
           'WeightsOnlyCheckpointHook']
