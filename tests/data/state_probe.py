"""A test-only hook: saves the model and optimizer state seen at the start of one iteration."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmdet.registry import HOOKS


@HOOKS.register_module()
class StateProbeHook(Hook):
    """Dump ``state_dict`` of the model and optimizer before iteration ``at_iter`` (0-based)."""

    def __init__(self, at_iter: int, out_file: str) -> None:
        self.at_iter = at_iter
        self.out_file = out_file

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if runner.iter != self.at_iter:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        torch.save(dict(iter=runner.iter,
                        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
                        optimizer=runner.optim_wrapper.state_dict()), self.out_file)
