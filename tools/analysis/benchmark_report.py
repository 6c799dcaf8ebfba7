"""Results of tools/analysis/benchmark.py: machine description, JSON log, markdown tables."""
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import time
from typing import Dict, List, Optional

LABELS = dict(mask2former='Mask2Former R50 panoptic', querymeld='QueryMeldNet R50 meld')
QUICK_LABELS = dict(mask2former='Mask2Former (shrunk)', querymeld='QueryMeldNet (tiny)')


def describe_machine() -> Dict[str, object]:
    """CPU model, cores, memory, load, torch version and git commit (no CUDA calls here: the
    workers report the GPU)."""
    import torch
    cpu = platform.processor() or 'unknown'
    try:
        with open('/proc/cpuinfo') as f:
            names = [line.split(':', 1)[1].strip() for line in f if line.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem_gb = None
    try:
        with open('/proc/meminfo') as f:
            mem_gb = round(int(f.readline().split()[1]) / 1024 ** 2, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                                text=True, cwd=osp.dirname(osp.abspath(__file__)),
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return dict(cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
                memory_gb=mem_gb, load_average=[round(x, 2) for x in os.getloadavg()],
                torch=torch.__version__, python=platform.python_version(), commit=commit,
                date=time.strftime('%Y-%m-%d %H:%M:%S'))


def summarise(times: List[float]) -> Dict[str, float]:
    """Median, min, max and relative spread ((max - min) / median) of repetition times."""
    med = statistics.median(times)
    return dict(median_s=med, min_s=min(times), max_s=max(times),
                spread=(max(times) - min(times)) / med if med > 0 else 0.0)


def append_json(path: str, run: Dict[str, object]) -> None:
    """Append one run (machine, arguments, records) to the JSON list at ``path``."""
    runs = []
    if osp.isfile(path):
        with open(path) as f:
            try:
                runs = json.load(f)
            except json.JSONDecodeError:
                runs = []
    runs.append(run)
    from mmquerymeld.utils.atomic import atomic_write  # the project's one atomic writer
    atomic_write(path, json.dumps(runs, indent=1))


def _fmt_time(rec: Dict) -> str:
    if 'error' in rec:
        return 'failed'
    return f"{rec['median_s']:.3g} [{rec['min_s']:.3g}-{rec['max_s']:.3g}]"


def _ratio(value: Optional[float], anchor: Optional[float]) -> str:
    if value is None or not anchor:
        return '-'
    return f'{value / anchor:.2f}x'


def _shape(hw) -> str:
    return f'{hw[0]}x{hw[1]}' if hw[0] != hw[1] else f'{hw[0]}²'


def _anchor(records: List[Dict], rec: Dict) -> Optional[Dict]:
    for other in records:
        if other['model'] == 'mask2former' and other['group'] == rec['group'] and \
                'error' not in other:
            return other
    return None


def machine_lines(machine: Dict, device: str, device_name: Optional[str],
                  threads: Optional[int]) -> List[str]:
    """One line describing the machine and software of a run."""
    threads = threads or machine['torch_threads']
    return [
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({threads} torch threads per "
        f"case), {machine['memory_gb']} GB RAM; device: {device_name or device}; torch "
        f"{machine['torch']}, Python {machine['python']}; commit {machine['commit']}; "
        f"{machine['date']}; load average at start {machine['load_average']}.",
    ]


def _header(columns: List[str]) -> List[str]:
    """A markdown table's header and separator rows."""
    return ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]


def _measured_cells(rec: Dict, records: List[Dict]) -> List[str]:
    """Time, its ratio, peak memory and its ratio to the group's Mask2Former."""
    anchor = _anchor(records, rec)
    return [_fmt_time(rec), _ratio(rec['median_s'], anchor and anchor['median_s']),
            f"{rec['peak_mb']:.0f}", _ratio(rec['peak_mb'], anchor and anchor['peak_mb'])]


def _row(cells: List[str]) -> str:
    return '| ' + ' | '.join(cells) + ' |'


TRAIN_COLUMNS = ['batch', 'model', 'step time, s: median [min-max]', 'x M2F',
                 'peak memory of the step above model + optimizer, MB', 'x M2F',
                 'batch in memory, MB', 'params, M']
INFER_COLUMNS = ['input (original)', 'task', 'texts', 'model', 'latency, s: median [min-max]',
                 'x M2F', 'peak predict memory above model, MB', 'x M2F', 'first call, s',
                 'panoptic segments']


def train_table(records: List[Dict], quick: bool) -> List[str]:
    """Markdown rows of the training records (ratios to the group's Mask2Former)."""
    labels = QUICK_LABELS if quick else LABELS
    lines = _header(TRAIN_COLUMNS)
    for rec in records:
        size = _shape(rec['size'])
        batch = f'2 x {size}: panoptic + 300-box box-only' if rec['box_only'] else \
            f'2 x {size}: panoptic'
        label = labels[rec['model']]
        if rec['box_only'] and rec['model'] == 'mask2former':
            label += ' (300 boxes as filled-box instance masks: it cannot train on boxes alone)'
        if 'error' in rec:
            lines.append(_row([batch, label, 'failed'] + ['-'] * 5))
            continue
        lines.append(_row([batch, label] + _measured_cells(rec, records) +
                          [f"{rec['batch_mb']:.1f}", f"{rec['params_m']:.1f}"]))
    return lines


def infer_table(records: List[Dict], quick: bool) -> List[str]:
    """Markdown rows of the inference records (ratios to the group's Mask2Former)."""
    labels = QUICK_LABELS if quick else LABELS
    lines = _header(INFER_COLUMNS)
    for rec in records:
        shape = _shape(rec['size'])
        if tuple(rec['ori']) != tuple(rec['size']):
            shape += f" ({_shape(rec['ori'])})"
        task = 'panoptic' if rec['model'] == 'mask2former' else rec['task']
        texts = '133 classes' if rec['model'] == 'mask2former' else str(rec['vocab'])
        first = [shape, task, texts, labels[rec['model']]]
        if 'error' in rec:
            lines.append(_row(first + ['failed'] + ['-'] * 5))
            continue
        counts = sorted(set([rec['segments']] + rec.get('segments_per_rep', []))) \
            if 'segments' in rec else []
        segs = '/'.join(map(str, counts)) if counts else '-'
        lines.append(_row(first + _measured_cells(rec, records) +
                          [f"{rec['first_call_s']:.3g}", segs]))
    return lines


NOTES = dict(
    train=('One training step = data preprocessor + forward + loss + backward + optimizer step '
           "(each model's own optimizer config). Random weights; QueryMeldNet with an 80-text "
           'vocabulary (70 things + 10 stuff), Mask2Former with its 133 classes; the same '
           'images, thing masks and stuff regions. Mask2Former LSJ padding to 1024² is dropped '
           '(both pad to a multiple of 32). "batch in memory" counts the packed samples '
           '(images, ground-truth masks, seg maps) before the step.'),
    infer=('Batch 1, random weights, cached vocabulary (the first call, which encodes it, is the '
           "warm-up and is reported as 'first call'). Mask2Former runs mmdet's own test_cfg "
           '({m2f}). Panoptic: the last layer\'s class and mask logits are overwritten just '
           'before post-processing so that exactly {seg} segments survive in both models '
           '(tools/analysis/benchmark_inputs.py: fix_panoptic_segments); the column reports '
           'the count each model returned.'),
)


def write_markdown(path: str, mode: str, machine: Dict, args: Dict, records: List[Dict]) -> None:
    """Write the table of one run (with the machine and protocol) to ``path``."""
    device_name = next((r.get('device_name') for r in records if r.get('device_name')), None)
    title = 'Training step' if mode == 'train' else 'Inference'
    lines = [f'# {title}: QueryMeldNet against Mask2Former (tools/analysis/benchmark.py {mode})',
             '']
    lines += machine_lines(machine, args['device'], device_name, args.get('threads'))
    lines += ['', f"Each case in its own process; {args['repeats']} repetitions after one "
              'warm-up call, interleaved across the cases of a group (same input); memory: '
              f"{next((r.get('memory_method') for r in records if r.get('memory_method')), '')}"
              '. Times on a busy machine are less reliable than memory.', '']
    note = NOTES[mode].format(m2f='panoptic only' if args['m2f_panoptic_only'] else
                              'panoptic + instance', seg=args.get('segments'))
    lines += [note, '']
    lines += train_table(records, args['quick']) if mode == 'train' else \
        infer_table(records, args['quick'])
    errors = [r for r in records if 'error' in r]
    if errors:
        lines += ['', '## Failures', '']
        for rec in errors:
            lines += [f"- {rec['case']}:", '', '```', rec['error'].strip()[-2000:], '```', '']
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
