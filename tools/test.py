"""Evaluate a checkpoint with mmengine's Runner (mmdet 3.x arguments).

Example:
    python tools/test.py configs/demo/querymeld_tiny_synthetic.py work_dirs/demo/iter_200.pth
    bash tools/dist_test.sh <config> <checkpoint> 8 --out results.pkl
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a mmquerymeld model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', type=str,
                        help='dump predictions to a pickle file (.pkl) for offline evaluation; '
                        'one process journals every batch to <out>.journal and an interrupted '
                        'run resumes from it')
    parser.add_argument('--show-dir', help='directory where painted images are saved')
    parser.add_argument('--metrics-out', help='write the final metrics to this JSON file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, xxx=yyy format')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    import mmquerymeld  # noqa: F401
    import mmquerymeld.evaluation.journal  # noqa: F401  (journal sampler, hook, atomic dump)
    from mmquerymeld.utils.runtime import adapt_cfg_to_device, load_cfg
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {args.checkpoint}')
    cfg = load_cfg(args.config, args.launcher, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            raise KeyError(f'{args.config}: --show-dir needs a `visualization` default hook')
        hooks.visualization.draw = True
        hooks.visualization.test_out_dir = args.show_dir
    journal = None
    if args.out is not None:
        journal = add_dump(cfg, args.out, args.checkpoint, args.launcher == 'none')
    adapt_cfg_to_device(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    metrics = runner.test()
    if args.metrics_out and runner.rank == 0:
        write_metrics(metrics, args.metrics_out)
    if journal is not None and osp.isfile(journal):
        os.remove(journal)  # the dump (and metrics) are complete: the next run starts over


def add_dump(cfg, out: str, checkpoint: str, journaled: bool) -> str:
    """Dump predictions to ``out`` (atomically); in one process, through a journal.

    One process: every finished batch is appended to ``<out>.journal``; a rerun of an
    interrupted evaluation (same checkpoint and dataset) predicts only what the journal lacks
    (``mmquerymeld.evaluation.journal``). Distributed runs dump at the end only.

    Returns:
        The journal path, or None.
    """
    from mmquerymeld.evaluation.journal import journal_fingerprint, journal_path
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must be a .pkl or .pickle file, got {out}')
    evaluators = cfg.test_evaluator
    evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
    cfg.test_evaluator = evaluators + [dict(type='AtomicDumpResults', out_file_path=out)]
    if not journaled:
        return None
    journal = journal_path(out)
    sampler = cfg.test_dataloader.get('sampler', {})
    if sampler.get('shuffle'):
        raise ValueError('--out with a prediction journal needs an unshuffled test sampler')
    cfg.test_dataloader.sampler = dict(type='JournalSampler', journal=journal)
    hook = dict(type='PredictionJournalHook', journal=journal,
                fingerprint=journal_fingerprint(checkpoint, cfg.test_dataloader.dataset))
    cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [hook]
    return journal


def write_metrics(metrics: dict, path: str) -> None:
    """Write ``metrics`` as JSON through a temporary file, so a crash never leaves half a file."""
    import json

    from mmquerymeld.utils.atomic import atomic_write
    atomic_write(path, json.dumps(_to_json(metrics), indent=2, sort_keys=True))


def _to_json(obj):
    """Metric values as JSON types: numpy / torch scalars and arrays become numbers and lists."""
    if isinstance(obj, dict):
        return {str(k): _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if hasattr(obj, 'tolist'):  # np.ndarray, np.generic, torch.Tensor (any size)
        return obj.tolist()
    return obj


if __name__ == '__main__':
    main()
