"""Tables, verdicts and the chart of the query study (paper Table 2, section 4.1; issue 11).

Reads the ``metrics*.json`` that ``tools/test.py --metrics-out`` wrote for each
(strategy, seed) run and turns them into a markdown table (mean ± std over seeds), seed-paired
differences meld − learnable / meld − conditional with their spread, the paper's two directions
judged by the issue's rule, the thing/stuff-by-query-type split and a bar chart with error bars.
"""
from __future__ import annotations

import json
import math
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

#: (column, metric-key suffix, scale): keys are found by their unique suffix in the metrics JSON.
COLUMNS: Tuple[Tuple[str, str, float], ...] = (
    ('mask AP', '/coco/segm_mAP', 100.0),  # COCO AP (0..1) shown in percent as in Table 2
    ('PQ', '/panoptic/PQ', 1.0),
    ('PQ_th', '/panoptic/PQ_th', 1.0),
    ('PQ_st', '/panoptic/PQ_st', 1.0),
    ('mIoU', '/semantic/mIoU', 1.0),
    ('mIoU_th', '/semantic/mIoU_th', 1.0),
    ('mIoU_st', '/semantic/mIoU_st', 1.0),
    ('ref mIoU', '/referring/mIoU', 1.0),
)
#: The query-type split of the panoptic metric (percent of matched gt segments).
SPLIT_COLUMNS: Tuple[Tuple[str, str, float], ...] = (
    ('things by conditional %', '/panoptic/thing_by_conditional', 1.0),
    ('stuff by learnable %', '/panoptic/stuff_by_learnable', 1.0),
)
#: The paper's two directions (section 4.1): (name, other strategy, columns judged; first leads).
DIRECTIONS: Tuple[Tuple[str, str, Tuple[str, ...]], ...] = (
    ('meld >= learnable on things', 'learnable', ('PQ_th', 'mask AP', 'mIoU_th')),
    ('meld >= conditional on stuff', 'conditional', ('PQ_st', 'mIoU_st')),
)


def metric_value(metrics: Dict[str, float], suffix: str, scale: float,
                 source: str = '') -> Optional[float]:
    """The one value whose key ends with ``suffix`` (times ``scale``), or ``None`` if absent.

    Raises:
        KeyError: If several keys end with ``suffix`` (the column would be ambiguous).
    """
    hits = [k for k in metrics if k.endswith(suffix)]
    if not hits:
        return None
    if len(hits) > 1:
        raise KeyError(f'{source}: several metrics end with {suffix!r}: {hits}')
    value = metrics[hits[0]]
    return None if value is None else float(value) * scale


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float('nan')
    return mean, math.sqrt(sum((v - mean)**2 for v in values) / (n - 1))


def fmt(mean: float, std: float, digits: int = 1) -> str:
    """``'12.3 ± 4.5'``, or ``'12.3'`` without a spread."""
    if math.isnan(std):
        return f'{mean:.{digits}f}'
    return f'{mean:.{digits}f} ± {std:.{digits}f}'


def load_runs(paths: Dict[Tuple[str, int], str]) -> Dict[str, Dict[int, Dict[str, float]]]:
    """``{strategy: {seed: {column: value}}}`` from ``{(strategy, seed): metrics.json}``;
    runs whose file is missing are left out."""
    out: Dict[str, Dict[int, Dict[str, float]]] = {}
    for (strategy, seed), path in sorted(paths.items()):
        if not osp.isfile(path):
            continue
        with open(path) as f:
            metrics = json.load(f)
        row = {}
        for name, suffix, scale in COLUMNS + SPLIT_COLUMNS:
            value = metric_value(metrics, suffix, scale, path)
            if value is not None:
                row[name] = value
        out.setdefault(strategy, {})[seed] = row
    return out


def paired(runs: Dict[str, Dict[int, Dict[str, float]]], a: str, b: str,
           column: str) -> List[float]:
    """``a − b`` on ``column`` for every seed both strategies have."""
    ra, rb = runs.get(a, {}), runs.get(b, {})
    return [ra[s][column] - rb[s][column] for s in sorted(set(ra) & set(rb))
            if column in ra[s] and column in rb[s]]


def verdict(diffs: Sequence[float]) -> str:
    """The issue's rule: "held" when the mean seed-paired difference is positive and larger than
    its spread (sample std), "failed" when negative and larger, "unresolved" otherwise."""
    if len(diffs) < 2:
        return f'unresolved ({len(diffs)} paired seed{"s" if len(diffs) != 1 else ""})'
    mean, std = mean_std(diffs)
    if mean > std:
        return 'held'
    if -mean > std:
        return 'failed'
    return 'unresolved'


def markdown(runs: Dict[str, Dict[int, Dict[str, float]]], strategies: Sequence[str],
             splits: Dict[str, str], title: str, reference: str = 'meld') -> str:
    """The study's markdown: the Table-2-style table, paired differences, verdicts, query split."""
    cols = [c[0] for c in COLUMNS]
    lines = [f'## {title}', '',
             '| strategy (learnable + conditional) | seeds | ' + ' | '.join(cols) + ' |',
             '|---|---|' + '---|' * len(cols)]
    for strategy in strategies:
        seeds = runs.get(strategy, {})
        cells = []
        for col in cols:
            vals = [r[col] for r in seeds.values() if col in r]
            cells.append(fmt(*mean_std(vals)) if vals else 'n/a')
        lines.append(f'| {strategy} ({splits.get(strategy, "?")}) | {len(seeds)} | '
                     + ' | '.join(cells) + ' |')
    lines += ['', 'Mask AP in percent; mean ± sample std over seeds.', '',
              f'### Seed-paired differences ({reference} − other)', '',
              '| difference | paired seeds | ' + ' | '.join(cols) + ' |',
              '|---|---|' + '---|' * len(cols)]
    for other in strategies:
        if other == reference:
            continue
        cells, n = [], 0
        for col in cols:
            diffs = paired(runs, reference, other, col)
            n = max(n, len(diffs))
            cells.append(fmt(*mean_std(diffs)) if diffs else 'n/a')
        lines.append(f'| {reference} − {other} | {n} | ' + ' | '.join(cells) + ' |')
    lines += ['', '### The paper\'s directions (rule: mean paired difference vs its spread)', '',
              '| direction | metric | mean ± std of paired differences | verdict |',
              '|---|---|---|---|']
    for name, other, dcols in DIRECTIONS:
        if reference not in runs or other not in runs:
            continue
        for col in dcols:
            diffs = paired(runs, reference, other, col)
            shown = fmt(*mean_std(diffs), digits=2) if diffs else 'n/a'
            lines.append(f'| {name} | {col} | {shown} | {verdict(diffs)} |')
    lines += ['', '### Matched panoptic segments by query type (paper: 99.6% / 53.3% on COCO)',
              '', '| strategy | ' + ' | '.join(c[0] for c in SPLIT_COLUMNS) + ' |',
              '|---|' + '---|' * len(SPLIT_COLUMNS)]
    for strategy in strategies:
        seeds = runs.get(strategy, {})
        cells = []
        for col, _, _ in SPLIT_COLUMNS:
            vals = [r[col] for r in seeds.values() if col in r]
            cells.append(fmt(*mean_std(vals)) if vals else 'n/a')
        lines.append(f'| {strategy} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def baseline_markdown(runs: Dict[str, Dict[int, Dict[str, float]]],
                      base: Dict[str, Dict[int, Dict[str, float]]], strategies: Sequence[str],
                      label: str, baseline: str) -> str:
    """A training ablation against the default study, seed by seed: per strategy and column
    the mean ± std of ``ablation − baseline`` over the seeds both have, and the issue's rule
    ("held": the ablation is higher by more than the spread)."""
    cols = [c[0] for c in COLUMNS]
    lines = [f'## {label} − {baseline} (paired by seed)', '',
             '| strategy | paired seeds | row | ' + ' | '.join(cols) + ' |',
             '|---|---|---|' + '---|' * len(cols)]
    for strategy in strategies:
        merged = {'ablation': runs.get(strategy, {}), 'baseline': base.get(strategy, {})}
        diffs = {col: paired(merged, 'ablation', 'baseline', col) for col in cols}
        n = max(len(d) for d in diffs.values())
        if n == 0:
            continue
        cells = [fmt(*mean_std(d)) if d else 'n/a' for d in diffs.values()]
        rules = [verdict(d).split(' (')[0] if d else 'n/a' for d in diffs.values()]
        lines.append(f'| {strategy} | {n} | difference | ' + ' | '.join(cells) + ' |')
        lines.append(f'| {strategy} | {n} | verdict | ' + ' | '.join(rules) + ' |')
    return '\n'.join(lines) + '\n'


def ablation_markdown(variants: Dict[str, Dict[str, Dict[int, Dict[str, float]]]],
                      strategies: Sequence[str], options: Dict[str, str]) -> str:
    """One row per (variant, strategy): the panoptic and instance columns, mean ± std."""
    cols = ('PQ', 'PQ_th', 'PQ_st', 'mask AP', 'things by conditional %', 'stuff by learnable %')
    lines = ['## Post-processing ablations (saved checkpoints re-evaluated)', '',
             '| variant | test_cfg changes | strategy | seeds | ' + ' | '.join(cols) + ' |',
             '|---|---|---|---|' + '---|' * len(cols)]
    for variant, runs in variants.items():
        for strategy in strategies:
            seeds = runs.get(strategy, {})
            if not seeds:
                continue
            cells = []
            for col in cols:
                vals = [r[col] for r in seeds.values() if col in r]
                cells.append(fmt(*mean_std(vals)) if vals else 'n/a')
            lines.append(f'| {variant} | {options.get(variant, "")} | {strategy} | '
                         f'{len(seeds)} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def bar_chart(runs: Dict[str, Dict[int, Dict[str, float]]], strategies: Sequence[str],
              path: str, title: str) -> None:
    """Grouped bars (one group per column, one bar per strategy) with std error bars, as PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmquerymeld.utils.atomic import atomic_open
    cols = [c[0] for c in COLUMNS]
    width = 0.8 / max(1, len(strategies))
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for i, strategy in enumerate(strategies):
        seeds = runs.get(strategy, {})
        means, errs = [], []
        for col in cols:
            vals = [r[col] for r in seeds.values() if col in r]
            mean, std = mean_std(vals) if vals else (float('nan'), float('nan'))
            means.append(mean)
            errs.append(0.0 if math.isnan(std) else std)
        xs = [j + (i - (len(strategies) - 1) / 2) * width for j in range(len(cols))]
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=f'{strategy} ({len(seeds)} seeds)')
    ax.set_xticks(range(len(cols)), cols)
    ax.set_ylabel('percent')
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100)
    plt.close(fig)
