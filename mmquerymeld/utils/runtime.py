"""Runtime adjustments of a config to the machine it runs on."""
import os
import os.path as osp
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def load_cfg(config: str, launcher: str = 'none', cfg_options: Optional[dict] = None,
             work_dir: Optional[str] = None) -> Config:
    """Load a config the way tools/train.py and tools/test.py need it.

    Args:
        config: Path of the config file.
        launcher: Job launcher (``none``, ``pytorch``, ``slurm``, ``mpi``).
        cfg_options: ``--cfg-options`` overrides, merged into the config.
        work_dir: ``--work-dir``; else the config's ``work_dir``; else
            ``./work_dirs/<config name>``.

    Returns:
        The loaded config.

    Raises:
        FileNotFoundError: If ``config`` does not exist (the message names the path).
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


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
