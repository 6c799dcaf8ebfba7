#!/usr/bin/env python
"""The query study (paper Table 2, section 4.1; issue 11): meld vs learnable-only vs
conditional-only queries, the same total number of queries, N seeds, on the synthetic world.

Each (strategy, seed) run trains through the real ``tools/train.py`` and is evaluated through the
real ``tools/test.py`` (subprocesses), then the table, the paired differences, the verdicts on the
paper's two directions and a bar chart are written to the work dir::

    OMP_NUM_THREADS=1 python tools/analysis/query_study.py            # 3 seeds x 3 strategies
    python tools/analysis/query_study.py --seeds 1 --iters 4 --quick  # a smoke run

Resumable: a run whose final checkpoint and metrics JSON exist is neither trained nor evaluated
again; an interrupted training resumes (``--resume``); a trained run without metrics is only
evaluated. Post-processing ablations re-evaluate the saved checkpoints of every strategy with the
same test_cfg change and never train::

    python tools/analysis/query_study.py --variant thr025 \\
        --test-options model.test_cfg.panoptic.object_mask_thr=0.25
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

import query_study_report as report  # noqa: E402
from query_study_worlds import (config_data_root, ensure_world,  # noqa: E402,F401
                                eval_world_options, reroot_options, train_world_options)
from mmquerymeld.testing.world_styles import STYLES  # noqa: E402

DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
#: strategy -> (learnable, conditional) queries; the demo's 10 + 20, 30 queries in each.
SPLITS: Dict[str, Tuple[int, int]] = {'meld': (10, 20), 'learnable': (30, 0),
                                      'conditional': (0, 30)}
#: --quick: a few iterations, and the study's metric options only.
QUICK_ITERS = 4
LOCK_POLL_S = 20.0
logger = logging.getLogger('query_study')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='the base config (demo)')
    parser.add_argument('--work-dir', default='work_dirs/query_study')
    parser.add_argument('--data-root',
                        help="the synthetic world to train on (generated if missing; default: "
                        "the config's, data/synthetic, or data/synthetic_<style>)")
    parser.add_argument('--world-style', default='default', choices=sorted(STYLES),
                        help="the training and held-out worlds' scene style (issue 11 item 3; "
                        "mmquerymeld/testing/world_styles.py): 'coco' has many small things, "
                        "fragmented stuff and camouflage")
    parser.add_argument('--world-train', type=int, metavar='N',
                        help='train images per family of the training world (default: 24 when '
                        'generating it; an existing world must have N)')
    parser.add_argument('--seeds', type=int, default=3, help='seeds 0..N-1')
    parser.add_argument('--iters', type=int, help="training iterations (config's max_iters)")
    parser.add_argument('--strategies', default='meld,conditional,learnable',
                        help=f'comma list of {sorted(SPLITS)}')
    parser.add_argument('--queries', type=int, default=30,
                        help='total queries per strategy; the meld keeps the 1:2 split')
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra key=value overrides for training and testing (a training '
                        'ablation: use its own --work-dir)')
    parser.add_argument('--variant', help='evaluate saved checkpoints only, under this name')
    parser.add_argument('--test-options', nargs='+', default=[],
                        help='key=value overrides for the --variant evaluation')
    parser.add_argument('--eval-world', metavar='DIR',
                        help="the held-out synthetic world every run is evaluated on (default "
                        "<data-root>_eval<N>, generated if missing: another seed, N val images "
                        "per family); 'none': the config's own val set (8 images per source "
                        "in the demo world, too few: see the README)")
    parser.add_argument('--eval-world-seed', type=int, default=1)
    parser.add_argument('--eval-world-val', type=int, default=64, metavar='N')
    parser.add_argument('--quick', action='store_true', help=f'{QUICK_ITERS} iterations')
    parser.add_argument('--dry', action='store_true', help='print the commands, run nothing')
    parser.add_argument('--baseline', metavar='DIR',
                        help='the default study\'s work dir: also write this (ablation) study\'s '
                        'seed-paired differences against it (query_study_vs_baseline.md)')
    parser.add_argument('--report-only', action='store_true',
                        help='write the table and chart from the runs evaluated so far (a study '
                        'shared by several sessions); train and evaluate nothing')
    args = parser.parse_args(argv)
    args.strategies = [s.strip() for s in args.strategies.split(',') if s.strip()]
    unknown = [s for s in args.strategies if s not in SPLITS]
    if unknown:
        parser.error(f'--strategies: unknown {unknown}; choose from {sorted(SPLITS)}')
    if args.test_options and not args.variant:
        parser.error('--test-options needs --variant NAME (the metrics of a variant are kept '
                     'apart from the study)')
    if args.data_root is None:
        args.data_root = 'data/synthetic' + ('' if args.world_style == 'default'
                                             else f'_{args.world_style}')
    if args.eval_world is None:
        args.eval_world = f"{args.data_root.rstrip('/')}_eval{args.eval_world_val}"
    elif args.eval_world.lower() == 'none':
        args.eval_world = None
    if args.quick and args.iters is None:
        args.iters = QUICK_ITERS
    return args


def query_split(strategy: str, total: int) -> Tuple[int, int]:
    """(learnable, conditional) for ``total`` queries; the meld keeps the demo's 1:2 ratio."""
    if strategy == 'meld':
        learnable = total // 3
        return learnable, total - learnable
    return (total, 0) if strategy == 'learnable' else (0, total)


def config_iters(config: str) -> int:
    from mmengine.config import Config
    return int(Config.fromfile(config).train_cfg.max_iters)


def study_options(strategy: str, seed: int, iters: int, total: int) -> List[str]:
    """--cfg-options of one run: query split, seed, schedule scaled to ``iters`` (the demo's
    warm-up and 90% / 95% steps), no validation during training, the semantic thing/stuff split."""
    from mmquerymeld.testing.world_classes import THING_CLASSES
    learnable, conditional = query_split(strategy, total)
    things = '[' + ','.join(THING_CLASSES) + ']'
    return [
        f'model.head.num_learnable_queries={learnable}',
        f'model.head.num_conditional_queries={conditional}',
        f'randomness.seed={seed}',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'train_cfg.val_begin={iters + 1}',
        f'param_scheduler.0.end={min(20, iters)}',
        f'param_scheduler.1.end={iters}',
        f'param_scheduler.1.milestones=[{int(iters * 0.9)},{int(iters * 0.95)}]',
        f'test_evaluator.0.metrics.syn_ade_semantic.thing_classes={things}',
    ]


class Run:
    """One (strategy, seed) run: its folder, checkpoint, metrics and commands."""

    def __init__(self, args: argparse.Namespace, strategy: str, seed: int, iters: int) -> None:
        self.args, self.strategy, self.seed, self.iters = args, strategy, seed, iters
        self.dir = osp.join(args.work_dir, strategy, f'seed{seed}')
        self.ckpt = osp.join(self.dir, f'iter_{iters}.pth')
        name = f'metrics_{args.variant}.json' if args.variant else 'metrics.json'
        self.metrics = osp.join(self.dir, name)
        self.options = (study_options(strategy, seed, iters, args.queries)
                        + list(args.world_options) + list(args.cfg_options))

    @property
    def name(self) -> str:
        return f'{self.strategy}/seed{self.seed}'

    def train_cmd(self) -> List[str]:
        return [sys.executable, osp.join(REPO, 'tools', 'train.py'), self.args.config,
                '--work-dir', self.dir, '--resume', '--cfg-options'] + self.options

    def test_cmd(self) -> List[str]:
        return [sys.executable, osp.join(REPO, 'tools', 'test.py'), self.args.config, self.ckpt,
                '--work-dir', osp.join(self.dir, 'test'), '--metrics-out', self.metrics,
                '--cfg-options'] + self.options + list(self.args.test_options)


def _env() -> dict:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([REPO, env.get('PYTHONPATH', '')])
    env.setdefault('OMP_NUM_THREADS', '1')
    return env


def _call(cmd: List[str], log_path: str, what: str) -> None:
    """Run ``cmd``, appending its output to ``log_path``; raise naming the log on failure."""
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    with open(log_path, 'a') as log:
        log.write(f'\n$ {" ".join(cmd)}\n')
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env())
    if proc.returncode != 0:
        raise RuntimeError(f'{what} failed (exit {proc.returncode}); see {log_path}')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire(run: Run) -> bool:
    """Take ``run.dir/run.lock`` (the owner's PID); False while another live process holds it,
    so several sessions (or a hand-started training) can share one work dir."""
    os.makedirs(run.dir, exist_ok=True)
    lock = osp.join(run.dir, 'run.lock')
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(lock) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                return False
            os.remove(lock)  # a stale lock of a process that is gone
            continue
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return True
    return False


def execute(run: Run, done: Dict[str, List[str]]) -> None:
    """Train (unless the final checkpoint exists) and evaluate (unless the metrics exist)."""
    if osp.isfile(run.ckpt) and osp.isfile(run.metrics):
        logger.info('%s: finished (checkpoint and %s present); skipped', run.name,
                    osp.basename(run.metrics))
        return
    if run.args.variant:  # evaluation only, into its own metrics file: no lock needed
        _execute(run, done)
        return
    if not acquire(run):
        # wait in this worker's slot, so --jobs bounds the trainings on the machine
        logger.info('%s: another live process holds %s; waiting for it', run.name,
                    osp.join(run.dir, 'run.lock'))
        while not acquire(run):
            time.sleep(LOCK_POLL_S)
        if osp.isfile(run.ckpt) and osp.isfile(run.metrics):
            os.remove(osp.join(run.dir, 'run.lock'))
            logger.info('%s: finished by the other process; skipped', run.name)
            return
    try:
        _execute(run, done)
    finally:
        os.remove(osp.join(run.dir, 'run.lock'))


def _execute(run: Run, done: Dict[str, List[str]]) -> None:
    t0 = time.time()
    if not osp.isfile(run.ckpt):
        if run.args.variant:
            logger.warning('%s: no checkpoint %s; variant %s skips it', run.name, run.ckpt,
                           run.args.variant)
            return
        logger.info('%s: training %d iterations%s', run.name, run.iters,
                    ' (resuming)' if glob.glob(osp.join(run.dir, 'iter_*.pth')) else '')
        _call(run.train_cmd(), osp.join(run.dir, 'train_log.txt'), f'{run.name} training')
        if not osp.isfile(run.ckpt):
            raise RuntimeError(f'{run.name}: training ended without {run.ckpt}')
        done['trained'].append(run.name)
    logger.info('%s: evaluating %s', run.name, run.ckpt)
    _call(run.test_cmd(), osp.join(run.dir, 'test_log.txt'), f'{run.name} evaluation')
    done['evaluated'].append(run.name)
    logger.info('%s: done in %.0f s', run.name, time.time() - t0)


def write_outputs(args: argparse.Namespace, runs: List[Run]) -> Dict[str, str]:
    """Write the table (markdown), the chart (PNG) and the collected metrics (JSON)."""
    from mmquerymeld.utils.atomic import atomic_write
    collected = report.load_runs({(r.strategy, r.seed): r.metrics for r in runs})
    splits = {s: '{} + {}'.format(*query_split(s, args.queries)) for s in args.strategies}
    suffix = f'_{args.variant}' if args.variant else ''
    world = '' if args.world_style == 'default' else f', {args.world_style} world'
    title = (f'Query study{": " + args.variant if args.variant else ""} '
             f'({runs[0].iters} iterations{world})')
    paths = {k: osp.join(args.work_dir, f'query_study{suffix}.{k}') for k in ('md', 'png', 'json')}
    text = report.markdown(collected, args.strategies, splits, title)
    if args.variant:
        changes = ' '.join(args.variant_options) or '(none: the config as it is)'
        text = f'test_cfg changes: `{changes}`\n\n' + text
    atomic_write(paths['md'], text)
    atomic_write(paths['json'], json.dumps(dict(
        iters=runs[0].iters, splits=splits, variant=args.variant, world_style=args.world_style,
        data_root=args.data_root,
        test_options=args.variant_options, eval_world=args.eval_world,
        runs={s: {str(k): v for k, v in r.items()} for s, r in collected.items()}), indent=2))
    report.bar_chart(collected, args.strategies, paths['png'], title)
    write_ablations(args)
    if args.baseline:
        base = report.load_runs({(r.strategy, r.seed): osp.join(
            args.baseline, osp.relpath(r.metrics, args.work_dir)) for r in runs})
        label = ' '.join(args.cfg_options) or osp.basename(osp.normpath(args.work_dir))
        paths['baseline'] = osp.join(args.work_dir, f'query_study{suffix}_vs_baseline.md')
        atomic_write(paths['baseline'], report.baseline_markdown(
            collected, base, args.strategies, f'`{label}`', f'`{args.baseline}`'))
    return paths


def write_ablations(args: argparse.Namespace) -> None:
    """Gather every variant's collected JSON into ``ablations.md``."""
    from mmquerymeld.utils.atomic import atomic_write
    variants, options = {}, {}
    for path in sorted(glob.glob(osp.join(args.work_dir, 'query_study*.json'))):
        with open(path) as f:
            data = json.load(f)
        name = data.get('variant') or 'study default'
        variants[name] = {s: {int(k): v for k, v in r.items()} for s, r in data['runs'].items()}
        options[name] = ' '.join(data.get('test_options') or []) or '(config)'
    if len(variants) > 1:
        atomic_write(osp.join(args.work_dir, 'ablations.md'),
                     report.ablation_markdown(variants, args.strategies, options))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s query_study %(message)s',
                        stream=sys.stdout, force=True)
    iters = args.iters or config_iters(args.config)
    args.variant_options = list(args.test_options)  # the variant's own (tables show these)
    own_root = config_data_root(args.config)
    # before the runs take their commands: the training world, then the held-out one
    args.world_options = train_world_options(args.config, args.data_root)
    eval_root = args.eval_world or (args.data_root if args.world_options else None)
    if eval_root and osp.normpath(eval_root) != osp.normpath(own_root):
        args.test_options = eval_world_options(args.config, own_root,
                                               eval_root) + list(args.test_options)
    runs = [Run(args, strategy, seed, iters) for seed in range(args.seeds)
            for strategy in args.strategies]  # seed-major: every strategy's seed 0 comes first
    done: Dict[str, List[str]] = {'trained': [], 'evaluated': []}
    if args.dry:
        for run in runs:
            print(' '.join(run.train_cmd()))
            print(' '.join(run.test_cmd()))
        return done
    if args.report_only:
        paths = write_outputs(args, runs)
        logger.info('report of the runs evaluated so far: table %s, chart %s', paths['md'],
                    paths['png'])
        return done
    world = dict(style=args.world_style)
    if args.world_train:
        world['num_train'] = args.world_train
    ensure_world(args.data_root, **world)
    if args.eval_world:
        ensure_world(args.eval_world, seed=args.eval_world_seed, num_train=2,
                     num_val=args.eval_world_val, style=args.world_style)
    os.makedirs(args.work_dir, exist_ok=True)
    logger.info('%d runs (%s x %d seeds, %d iterations), %d at a time, in %s', len(runs),
                ','.join(args.strategies), args.seeds, iters, args.jobs, args.work_dir)
    errors = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [(run, pool.submit(execute, run, done)) for run in runs]
        for run, future in futures:
            try:
                future.result()
            except Exception as exc:  # keep the other runs going; report at the end
                logger.error('%s: %s', run.name, exc)
                errors.append(run.name)
    paths = write_outputs(args, runs)
    logger.info('trained %d runs, evaluated %d; table %s, chart %s', len(done['trained']),
                len(done['evaluated']), paths['md'], paths['png'])
    if errors:
        raise SystemExit(f'query_study: runs failed: {errors}')
    return done


if __name__ == '__main__':
    main()
