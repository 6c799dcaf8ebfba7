"""Side-by-side benchmark: QueryMeldNet R50 meld against mmdet's Mask2Former R50 panoptic.

Modes:

* ``train``: one training step (preprocess + forward + loss + backward + optimizer step) on the
  same batch of 2 images (512² on CPU, 1024² on a GPU by default): step time and peak memory.
  A second row replaces image 2 by a 300-box box-only image (QueryMeldNet: a ``detection``
  sample without masks; Mask2Former, which cannot train on boxes alone: the same boxes as
  filled-box instance masks).
* ``infer``: latency and peak predict memory of every task (semantic, instance, panoptic,
  referring, foreground, detection) and vocabulary size (cached vocabulary), against
  Mask2Former's panoptic predict at the same input; optionally a 1024² input whose original is
  2560x3072 (the result is brought back to the original size). The number of panoptic segments
  is fixed in both models (``--segments``; see ``benchmark_inputs.fix_panoptic_segments``).

Each case runs in its own process (forked after the imports on CPU, spawned on CUDA); cases of a
group (the same input) are started one after the other, warmed up once, then their repetitions
are interleaved. Results are appended to ``<out>/<mode>.json``; the run's table goes to
``<out>/<mode>.md``, with ratios to Mask2Former and the machine described.

Examples::

    python tools/analysis/benchmark.py train
    python tools/analysis/benchmark.py infer --vocab 80 --tasks panoptic foreground
    python tools/analysis/benchmark.py infer --device cuda --large-original yes
    python tools/analysis/benchmark.py train --quick   # tiny models, seconds (tests)
    # issue 10's acceptance cases at 1024² on CPU (the README's inference table; about an
    # hour on 2 quiet cores; --max-procs 4 keeps the 2560x3072 group under ~20 GB)
    MMQM_TEXT_CACHE_DIR=work_dirs/bench_textcache OMP_NUM_THREADS=1 \
    python tools/analysis/benchmark.py infer \
        --size 1024 --large-original yes --threads 1 --max-procs 4 --repeats 3 --timeout 3600 \
        --cases panoptic:80 panoptic:1203 panoptic:10000 \
        --large-cases foreground:1 referring:80 instance:80 panoptic:80 semantic:1203

Large vocabularies: the warm-up call encodes the vocabulary with a random ViT-B-16 tower (14
templates per class name), about 2 minutes for 1203 names on 2 CPU cores and ~15 for 10000, in
every process that uses it, unless ``MMQM_TEXT_CACHE_DIR`` names an on-disk text cache (the
random tower is seeded, so every case process and every later run hits the same entries).
"""
import argparse
import multiprocessing as mp
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from benchmark_report import append_json, describe_machine, summarise, write_markdown  # noqa

TASKS = ('semantic', 'instance', 'panoptic', 'referring', 'foreground', 'detection')
LARGE_ORIGINAL = ((1024, 1024), (2560, 3072))
QUICK_LARGE_ORIGINAL = ((128, 128), (320, 384))


def parse_size(text: str) -> Tuple[int, int]:
    """``'512'`` -> (512, 512); ``'800x1333'`` -> (800, 1333) (height x width)."""
    parts = text.lower().split('x')
    if len(parts) == 1:
        return int(parts[0]), int(parts[0])
    return int(parts[0]), int(parts[1])


def parse_case(text: str) -> Tuple[str, int]:
    """``'semantic:1203'`` -> ``('semantic', 1203)`` (foreground: its one prompt, any number)."""
    task, _, vocab = text.partition(':')
    if task not in TASKS or not vocab.isdigit() or int(vocab) < 1:
        raise argparse.ArgumentTypeError(
            f'{text!r}: expected TASK:VOCAB with TASK in {", ".join(TASKS)} and VOCAB >= 1')
    return task, 1 if task == 'foreground' else int(vocab)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('mode', choices=['train', 'infer'])
    parser.add_argument('--size', nargs='+', type=parse_size, default=None,
                        help='input sizes, e.g. 512 or 800x1333 (default: train 512 on CPU and '
                        '1024 on CUDA; infer 512 on CPU and 800x1333 on CUDA; quick 128)')
    parser.add_argument('--vocab', nargs='+', type=int, default=[80, 1203, 10000],
                        help='vocabulary sizes of QueryMeldNet (infer)')
    parser.add_argument('--tasks', nargs='+', choices=TASKS, default=list(TASKS))
    parser.add_argument('--cases', nargs='+', type=parse_case, default=None,
                        metavar='TASK:VOCAB',
                        help='infer: exactly these QueryMeldNet cases at the --size inputs '
                        '(e.g. panoptic:80 panoptic:10000) instead of --tasks x --vocab')
    parser.add_argument('--large-cases', nargs='+', type=parse_case, default=None,
                        metavar='TASK:VOCAB',
                        help='infer: the cases of the 2560x3072-original input (default: as '
                        'at the --size inputs)')
    parser.add_argument('--repeats', type=int, default=3, help='timed repetitions per case')
    parser.add_argument('--out', default='work_dirs/benchmark')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default=None,
                        help='default: cuda when available')
    parser.add_argument('--quick', action='store_true',
                        help='tiny models at 128 px (tests of the harness)')
    parser.add_argument('--large-original', choices=['auto', 'yes', 'no'], default='auto',
                        help='infer: add a 1024² input whose original is 2560x3072 (auto: with '
                        '--quick or on CUDA; on CPU it needs ~20 GB of memory)')
    parser.add_argument('--no-large-anchor', action='store_true',
                        help='infer: no Mask2Former in the 2560x3072-original groups (its '
                        'panoptic post-processing there needs ~16 GB; the QueryMeldNet cases '
                        'keep their absolute memory)')
    parser.add_argument('--segments', type=int, default=None,
                        help='panoptic segments kept by both models (default 20, quick 4)')
    parser.add_argument('--m2f-panoptic-only', action='store_true',
                        help="Mask2Former: panoptic post-processing only (mmdet's config also "
                        'runs the instance post-processing)')
    parser.add_argument('--max-procs', type=int, default=4,
                        help='case processes alive at once (one group)')
    parser.add_argument('--timeout', type=float, default=7200,
                        help='seconds a case may take to build + warm up, or per repetition')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads per case (default: torch\'s own; quick: 1). On '
                        'a machine shared with other jobs, 1 avoids OpenMP oversubscription')
    parser.add_argument('--start-method', choices=['fork', 'spawn'], default=None,
                        help='how case processes start (default: fork on CPU, after the imports; '
                        'spawn on CUDA)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--msda-pytorch', action='store_true',
                        help="deformable attention on mmcv's PyTorch path in both models (a GPU "
                        "machine where mmcv's CUDA ops are not built: gpu_check.sh fallback)")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    cuda = args.device == 'cuda'
    if args.size is None:
        args.size = [(128, 128)] if args.quick else \
            [(1024, 1024) if cuda else (512, 512)] if args.mode == 'train' else \
            [(800, 1333) if cuda else (512, 512)]
    if args.threads is None and args.quick:
        args.threads = 1
    if args.segments is None:
        args.segments = 4 if args.quick else 20
    if args.repeats < 1:
        parser.error('--repeats must be >= 1')
    return args


def _base_spec(args: argparse.Namespace) -> Dict:
    return dict(mode=args.mode, quick=args.quick, device=args.device, seed=args.seed,
                threads=args.threads,
                m2f_instance_on=not args.m2f_panoptic_only, fixed_segments=args.segments,
                box_only=False, task='panoptic', vocab=None, msda_pytorch=args.msda_pytorch)


def make_groups(args: argparse.Namespace) -> List[List[Dict]]:
    """Cases grouped by input; each group starts with its Mask2Former anchor."""
    groups = []
    if args.mode == 'train':
        for size in args.size:
            for box_only in (False, True):
                groups.append([
                    dict(_base_spec(args), model=m, size=size, ori=size, box_only=box_only)
                    for m in ('mask2former', 'querymeld')])
        return groups
    inputs = [(size, size) for size in args.size]
    large = args.large_original == 'yes' or \
        (args.large_original == 'auto' and (args.quick or args.device == 'cuda'))
    if large:
        inputs.append(QUICK_LARGE_ORIGINAL if args.quick else LARGE_ORIGINAL)
    grid = [(task, vocab) for task in args.tasks
            for vocab in ([1] if task == 'foreground' else args.vocab)]
    square = args.cases or grid
    for size, ori in inputs:
        cases = (args.large_cases or square) if ori != size else square
        qm = [dict(_base_spec(args), model='querymeld', task=task, vocab=vocab, size=size,
                   ori=ori) for task, vocab in cases]
        anchored = not (args.no_large_anchor and ori != size)
        per_group = max(1, args.max_procs - int(anchored))
        for i in range(0, len(qm), per_group):
            anchor = [dict(_base_spec(args), model='mask2former', size=size, ori=ori)]
            groups.append(anchor * anchored + qm[i:i + per_group])
    return groups


def case_name(spec: Dict) -> str:
    size = 'x'.join(map(str, spec['size']))
    if spec['mode'] == 'train':
        return f"train/{spec['model']}/{size}" + ('/box-only' if spec['box_only'] else '')
    name = f"infer/{spec['model']}/{spec['task']}/{size}"
    if tuple(spec['ori']) != tuple(spec['size']):
        name += f"->{'x'.join(map(str, spec['ori']))}"
    return name + (f"/{spec['vocab']}texts" if spec['model'] == 'querymeld' else '')


class Case:
    """A case process and its results."""

    def __init__(self, ctx, spec: Dict, group: int) -> None:
        from benchmark_worker import worker_main
        self.spec = spec
        self.record = dict(spec, case=case_name(spec), group=group, times=[], peaks=[])
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(spec, child), daemon=True)
        self.proc.start()
        child.close()

    @property
    def ok(self) -> bool:
        return 'error' not in self.record

    def receive(self, timeout: float) -> Optional[Dict]:
        """The worker's next message, or None (error recorded) if it died or timed out."""
        try:
            if self.conn.poll(timeout):
                msg = self.conn.recv()
                if 'error' not in msg:
                    return msg
                self.record['error'] = msg['error']
            else:
                self.record['error'] = f'no answer within {timeout:.0f} s'
        except (EOFError, OSError) as exc:
            self.record['error'] = (f'worker died ({type(exc).__name__}; exit code '
                                    f'{self.proc.exitcode}: killed for memory?)')
        return None

    def close(self) -> None:
        try:
            self.conn.send('quit')
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(30)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run_group(ctx, specs: List[Dict], group: int, args: argparse.Namespace) -> List[Dict]:
    """Start the cases of a group one by one (each warms up alone), then interleave the
    repetitions (rotating the order every round)."""
    cases = []
    for spec in specs:
        case = Case(ctx, spec, group)
        ready = case.receive(args.timeout)
        if ready is not None:
            ready.pop('ready', None)
            case.record.update(ready)
        print(f"[benchmark] ready {case.record['case']}: "
              f"{'ok' if case.ok else 'FAILED'}", flush=True)
        cases.append(case)
        if not case.ok:
            case.close()
    for rep in range(args.repeats):
        live = [c for c in cases if c.ok]
        shift = rep % max(1, len(live))
        for case in live[shift:] + live[:shift]:
            case.conn.send('run')
            msg = case.receive(args.timeout)
            if msg is None:
                case.close()
                continue
            case.record['times'].append(msg['time_s'])
            case.record['peaks'].append(msg['peak_mb'])
            if 'segments' in msg:
                case.record.setdefault('segments_per_rep', []).append(msg['segments'])
            print(f"[benchmark] {case.record['case']} rep {rep + 1}: {msg['time_s']:.3f} s, "
                  f"+{msg['peak_mb']:.0f} MB", flush=True)
    for case in cases:
        if case.ok:
            case.close()
            case.record.update(summarise(case.record['times']))
            case.record['peak_mb'] = max(case.record['peaks'])
    return [case.record for case in cases]


def preload() -> None:
    """Import what every worker needs (forked workers then start without import time)."""
    import mmquerymeld  # noqa: F401
    import mmdet.models  # noqa: F401
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import benchmark_worker  # noqa: F401


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    machine = describe_machine()
    method = args.start_method or ('spawn' if args.device == 'cuda' else 'fork')
    if method == 'fork':
        preload()  # imports only (no torch computation here, so OpenMP is not yet started)
    ctx = mp.get_context(method)
    start = time.time()
    records = []
    for g, specs in enumerate(make_groups(args)):
        records += run_group(ctx, specs, g, args)
    arg_dict = {k: v for k, v in vars(args).items()}
    run = dict(mode=args.mode, machine=machine, args=arg_dict, records=records,
               wall_s=time.time() - start,
               load_average_end=[round(x, 2) for x in os.getloadavg()])
    append_json(osp.join(args.out, f'{args.mode}.json'), run)
    write_markdown(osp.join(args.out, f'{args.mode}.md'), args.mode, machine, arg_dict, records)
    print(f"[benchmark] {len(records)} cases ({sum('error' in r for r in records)} failed) in "
          f"{run['wall_s']:.0f} s -> {osp.join(args.out, args.mode)}.json / .md", flush=True)
    return records


if __name__ == '__main__':
    main()
