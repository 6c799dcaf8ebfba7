"""Skip the optimizer step of a batch whose loss is NaN / Inf (``NonFiniteLossHook`` counts)."""
from typing import Dict, Union

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.registry import MODEL_WRAPPERS
from torch import Tensor

#: ``log_vars`` key set to 1 when the step was skipped for a non-finite loss.
SKIPPED_KEY = 'nonfinite_skipped'


def guarded_update(parsed_loss: Tensor, log_vars: Dict[str, Tensor],
                   optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
    """``optim_wrapper.update_params(parsed_loss)`` unless the loss is non-finite.

    The sum is non-finite exactly when a term is NaN / Inf (or the sum overflows), so one check
    (one device synchronisation) decides; ``NonFiniteLossHook`` names the terms from the log
    variables.

    In a distributed run (``NonFiniteGuardDDP``) the ranks agree: a non-finite loss on any rank
    skips the step on all, so no rank waits in a gradient all-reduce the others never join. A skipped batch runs no
    backward and no optimizer step: weights, optimizer moments and the fp16 loss scale are left as
    they were. A finite loss always reaches ``update_params``, so the steps that
    ``AmpOptimWrapper``'s GradScaler skips for Inf gradients are its own business and are not
    reported here.

    Args:
        parsed_loss: Sum of the loss terms (``BaseModel.parse_losses``).
        log_vars: ``parse_losses``'s log variables; ``nonfinite_skipped`` is added (0 or 1).
        optim_wrapper: The run's optimizer wrapper.

    Returns:
        ``log_vars``.
    """
    flag = (~torch.isfinite(parsed_loss.detach())).float()
    if get_world_size() > 1:
        all_reduce(flag, op='max')
    if flag.item() > 0:
        log_vars[SKIPPED_KEY] = flag
        return log_vars
    optim_wrapper.update_params(parsed_loss)
    log_vars[SKIPPED_KEY] = flag
    return log_vars


# mmengine's registry: Runner.wrap_model looks the type up there, not in the scope's child
@MODEL_WRAPPERS.register_module()
class NonFiniteGuardDDP(MMDistributedDataParallel):
    """mmengine's DDP wrapper whose ``train_step`` skips non-finite steps on every rank.

    ``MMDistributedDataParallel.train_step`` calls ``update_params`` itself, bypassing the
    module's ``train_step``; this one runs the same forward (through DDP, so gradients are
    synchronised) and then :func:`guarded_update`. ``tools/train.py`` selects it for distributed
    runs whose config names no ``model_wrapper_cfg``, with mmengine's default arguments.
    """

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        with optim_wrapper.optim_context(self):
            data = self.module.data_preprocessor(data, training=True)
            losses = self._run_forward(data, mode='loss')
        parsed_loss, log_vars = self.module.parse_losses(losses)
        return guarded_update(parsed_loss, log_vars, optim_wrapper)
