"""Train a model from a config with mmengine's Runner (mmdet 3.x arguments).

Example:
    python tools/train.py configs/demo/querymeld_tiny_synthetic.py --work-dir work_dirs/demo
    bash tools/dist_train.sh configs/querymeld/querymeld_r50_meld.py 8 --amp
"""
import argparse
import logging
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a mmquerymeld model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and checkpoints')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='mixed-precision training: fp16 autocast with a dynamic loss scale on '
                        'CUDA, bf16 autocast on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest checkpoint in the work dir '
        'when no path is given')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, xxx=yyy format (e.g. '
        'train_cfg.max_iters=10 "model.backbone.depth=18")')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


AMP_WRAPPERS = ('AmpOptimWrapper', 'AutocastOptimWrapper')


def enable_amp(cfg: Config) -> Config:
    """Switch the optimizer wrapper to mixed precision for the machine this runs on.

    With CUDA: mmengine's ``AmpOptimWrapper`` (fp16 autocast, dynamic loss scale). Without (CPU):
    mmquerymeld's ``AutocastOptimWrapper`` (bf16 autocast, no loss scale needed), since
    ``AmpOptimWrapper`` refuses to build without a GPU.

    Args:
        cfg: The full config, modified in place.

    Returns:
        The same config.

    Raises:
        ValueError: If the config's wrapper is neither ``OptimWrapper`` nor a mixed-precision one.
    """
    opt_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if opt_type in AMP_WRAPPERS:
        print_log(f'AMP training is already enabled in the config ({opt_type}).',
                  logger='current', level=logging.WARNING)
        return cfg
    if opt_type != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {opt_type}')
    if torch.cuda.is_available():
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    else:
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
        cfg.optim_wrapper.device_type = 'cpu'
        cfg.optim_wrapper.dtype = 'bfloat16'
    return cfg


def build_cfg(args: argparse.Namespace) -> Config:
    """Load the config and apply the command-line overrides."""
    from mmquerymeld.utils.runtime import load_cfg
    cfg = load_cfg(args.config, args.launcher, args.cfg_options, args.work_dir)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{args.config}: --auto-scale-lr needs '
                           '`auto_scale_lr = dict(enable=..., base_batch_size=...)`')
        cfg.auto_scale_lr.enable = True
    if cfg.get('launcher', 'none') != 'none' and not cfg.get('model_wrapper_cfg'):
        # mmengine's default DDP wrapper and arguments, plus the non-finite-loss guard
        # (mmquerymeld/engine/nonfinite.py: every rank skips a step whose loss is NaN / Inf)
        cfg.model_wrapper_cfg = dict(
            type='NonFiniteGuardDDP', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume checkpoint not found: {args.resume}')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main() -> None:
    args = parse_args()
    # registers mmquerymeld (and mmdet) modules and the safe checkpoint globals
    import mmquerymeld  # noqa: F401
    from mmquerymeld.engine import check_pretrained_weights
    from mmquerymeld.utils.runtime import adapt_cfg_to_device
    cfg = build_cfg(args)
    if int(os.environ.get('LOCAL_RANK', 0)) == 0:
        # fetch the pretrained weights the config starts from (ResNet-50, CLIP text tower) into
        # their caches, or fail now naming the files to download and the config keys to set;
        # other ranks read the same caches (mmengine loads rank 0 first)
        check_pretrained_weights(cfg)
    adapt_cfg_to_device(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
