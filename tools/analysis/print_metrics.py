"""Print a metrics JSON (tools/test.py --metrics-out) as one table per source.

    python tools/analysis/print_metrics.py work_dirs/demo/metrics.json
"""
import argparse
import json
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('metrics', help='metrics JSON file')
    args = parser.parse_args()
    with open(args.metrics) as f:
        metrics = json.load(f)
    by_source = defaultdict(list)
    for key, value in sorted(metrics.items()):
        source, _, name = key.partition('/')
        if not name:
            source, name = '(overall)', key
        by_source[source].append((name, value))
    for source, rows in by_source.items():
        print(f'\n{source}')
        for name, value in rows:
            text = f'{value:.4f}' if isinstance(value, float) else str(value)
            print(f'  {name:<32} {text:>10}')


if __name__ == '__main__':
    main()
