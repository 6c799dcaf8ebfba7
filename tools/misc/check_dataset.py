"""Check a config's datasets before a run: every source, every sample, through its pipeline.

Example:
    python tools/misc/check_dataset.py configs/demo/querymeld_tiny_synthetic.py --split val \
        --workers 2 --fix-list work_dirs/bad_val.json

Reports per source of ``<split>_dataloader.dataset`` (a ``MultiSourceDataset``): images that do
not decode, missing annotation / mask files, empty targets (warning), degenerate boxes or masks,
boxes outside the image, labels outside the vocabulary, referring expressions longer than the text
encoder's context length, and class names that differ from the evaluator's annotation files.

Exit status: 0 when every source is usable; 1 when a source is unusable: its annotation file is
missing or unparseable, it has no sample, its class names differ from the evaluator's, or more
than ``--max-bad-ratio`` (default 10 %) of its samples carry an error. ``--fix-list OUT`` writes
the samples in error (source, index, path, reasons) as JSON; pass it to the dataset with
``--cfg-options train_dataloader.dataset.exclude_list=OUT`` to leave them out.
"""
import argparse
import json
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Check the datasets of a mmquerymeld config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--split', choices=['train', 'val', 'test'], default='train')
    parser.add_argument('--workers', type=int, default=0,
                        help='worker processes for the per-sample checks')
    parser.add_argument('--fix-list', help='write the samples in error to this JSON file')
    parser.add_argument('--report', help='write the full report to this JSON file')
    parser.add_argument('--max-bad-ratio', type=float, default=0.1,
                        help='a source with more samples in error than this is unusable')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, xxx=yyy format')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmquerymeld  # noqa: F401
    from mmquerymeld.datasets.doctor import check_dataset
    from mmquerymeld.utils.atomic import atomic_write
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    report = check_dataset(cfg, split=args.split, workers=args.workers,
                           max_bad_ratio=args.max_bad_ratio, progress=not args.no_progress)
    print(report.format())
    if args.fix_list:
        report.write_fix_list(args.fix_list)
        print(f'fix list ({len(report.fix_list()["exclude"])} samples): '
              f'{osp.abspath(args.fix_list)}')
    if args.report:
        atomic_write(args.report, json.dumps(report.to_dict(), indent=1))
    bad = [s.name for s in report.sources if s.unusable]
    print(f'unusable sources: {bad}' if bad else 'every source is usable')
    return report.exit_code


if __name__ == '__main__':
    sys.exit(main())
