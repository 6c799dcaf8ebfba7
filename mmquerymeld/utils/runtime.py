"""Runtime adjustments of a config to the machine it runs on."""
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def adapt_cfg_to_device(cfg: Config) -> Config:
    """Make a distributed run work on a CPU-only machine.

    Without a visible GPU, NCCL is unavailable, DDP refuses ``device_ids`` for CPU modules, and
    mmengine's ``init_dist`` calls ``torch.cuda.set_device``. So the backend becomes ``gloo``, the
    DDP wrapper gets ``device_ids=None``, and for the ``pytorch`` launcher (torchrun) the process
    group is initialised here, after which the Runner skips its own ``init_dist``. On GPU machines
    and in non-distributed runs the config is left as it is.

    Args:
        cfg: The full config; ``cfg.launcher`` says whether the run is distributed.

    Returns:
        The same config object, modified in place.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    if launcher == 'pytorch' and not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    return cfg
