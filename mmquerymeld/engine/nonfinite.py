"""Skip the optimizer step of a batch whose loss is NaN / Inf (``NonFiniteLossHook`` counts)."""
import math
from typing import Dict, List, Union

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.optim import OptimWrapper
from torch import Tensor

#: ``log_vars`` key set to 1 when the step was skipped for a non-finite loss.
SKIPPED_KEY = 'nonfinite_skipped'


def nonfinite_loss_terms(losses: Dict[str, Union[Tensor, List[Tensor]]]) -> List[str]:
    """Names of the loss terms (keys containing ``loss``) with a NaN or Inf value.

    Args:
        losses: The model's loss dict (tensors or lists of tensors).

    Returns:
        The offending keys, in the dict's order.
    """
    bad = []
    for name, value in losses.items():
        if 'loss' not in name:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(not bool(torch.isfinite(v.detach()).all()) for v in values):
            bad.append(name)
    return bad


def guarded_update(parsed_loss: Tensor, losses: Dict[str, Union[Tensor, List[Tensor]]],
                   log_vars: Dict[str, Tensor], optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
    """``optim_wrapper.update_params(parsed_loss)`` unless a loss term is non-finite.

    In a distributed run the ranks agree (a non-finite loss on any rank skips the step on all,
    so no rank waits in a gradient all-reduce the others never join). A skipped batch runs no
    backward and no optimizer step: weights, optimizer moments and the fp16 loss scale are left as
    they were. A finite loss always reaches ``update_params``, so the steps that
    ``AmpOptimWrapper``'s GradScaler skips for Inf gradients are its own business and are not
    reported here.

    Args:
        parsed_loss: Sum of the loss terms (``BaseModel.parse_losses``).
        losses: The loss dict it was summed from.
        log_vars: ``parse_losses``'s log variables; ``nonfinite_skipped`` is added (0 or 1).
        optim_wrapper: The run's optimizer wrapper.

    Returns:
        ``log_vars``.
    """
    bad = bool(nonfinite_loss_terms(losses)) or not math.isfinite(float(parsed_loss.detach()))
    flag = torch.tensor(float(bad), device=parsed_loss.device)
    if get_world_size() > 1:
        all_reduce(flag, op='max')
    if flag.item() > 0:
        log_vars[SKIPPED_KEY] = flag
        return log_vars
    optim_wrapper.update_params(parsed_loss)
    log_vars[SKIPPED_KEY] = flag
    return log_vars
