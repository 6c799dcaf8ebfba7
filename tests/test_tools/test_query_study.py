"""tools/analysis/query_study.py (issue 11): the study driver end to end, resumability, and the
table's arithmetic (paired differences, the issue's held / failed / unresolved rule)."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))

import query_study_report as report  # noqa: E402

STUDY = osp.join(REPO, 'tools', 'analysis', 'query_study.py')
#: Table 2's columns plus the issue's semantic thing / stuff split and referring mIoU.
EXPECTED_COLUMNS = ('mask AP', 'PQ', 'PQ_th', 'PQ_st', 'mIoU', 'mIoU_th', 'mIoU_st', 'ref mIoU')


def _run_study(cwd, work_dir):
    cmd = [sys.executable, STUDY, '--seeds', '1', '--quick', '--strategies', 'meld,learnable',
           '--jobs', '2', '--work-dir', work_dir, '--eval-world-val', '2']
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=2400)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return proc.stdout + proc.stderr


def test_study_end_to_end_and_second_run_trains_nothing(tmp_path):
    from mmquerymeld.testing import generate_synthetic_world
    generate_synthetic_world(str(tmp_path / 'data' / 'synthetic'), seed=0, num_train=2,
                             num_val=2, img_size=64)
    work = str(tmp_path / 'study')
    out = _run_study(str(tmp_path), work)
    assert 'trained 2 runs, evaluated 2' in out, out[-3000:]
    # evaluated on the held-out world (generated beside the training world), not the config's val
    assert osp.isfile(tmp_path / 'data' / 'synthetic_eval2' / 'world_info.json')
    test_log = open(osp.join(work, 'meld', 'seed0', 'test_log.txt')).read()
    assert 'data_root=data/synthetic_eval2/' in test_log
    table = open(osp.join(work, 'query_study.md')).read()
    header = next(line for line in table.splitlines() if line.startswith('| strategy ('))
    for col in EXPECTED_COLUMNS:
        assert f' {col} |' in header, col
    # each strategy's row carries a number in every column (1 seed: no spread)
    for strategy, split in (('meld', '10 + 20'), ('learnable', '30 + 0')):
        row = next(line for line in table.splitlines()
                   if line.startswith(f'| {strategy} ({split}) |'))
        cells = [c.strip() for c in row.strip('|').split('|')][2:]
        assert len(cells) == len(EXPECTED_COLUMNS)
        for cell in cells:
            float(cell)
    assert '| meld − learnable | 1 |' in table
    assert 'unresolved (1 paired seed)' in table
    assert 'things by conditional %' in table
    png = osp.join(work, 'query_study.png')
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert osp.getsize(png) > 5000
    ckpt = osp.join(work, 'meld', 'seed0', 'iter_4.pth')
    stamp = os.stat(ckpt).st_mtime_ns

    # the same command again: nothing trained or evaluated, the checkpoint untouched
    out = _run_study(str(tmp_path), work)
    assert 'trained 0 runs, evaluated 0' in out, out[-3000:]
    assert out.count('skipped') == 2
    assert os.stat(ckpt).st_mtime_ns == stamp


def _runs(meld, other, name='learnable', col='PQ_th'):
    return {'meld': {s: {col: v} for s, v in enumerate(meld)},
            name: {s: {col: v} for s, v in enumerate(other)}}


def test_paired_differences_and_the_issue_rule():
    runs = _runs([10.0, 20.0, 30.0], [8.0, 17.0, 29.0])  # differences 2, 3, 1: mean 2, std 1
    diffs = report.paired(runs, 'meld', 'learnable', 'PQ_th')
    assert diffs == [2.0, 3.0, 1.0]
    assert report.mean_std(diffs) == pytest.approx((2.0, 1.0))
    assert report.verdict(diffs) == 'held'
    assert report.verdict([-d for d in diffs]) == 'failed'
    assert report.verdict([2.0, -1.0, 5.0]) == 'unresolved'  # mean 2, std 3
    assert report.verdict([4.0]).startswith('unresolved')
    # pairing is by seed: a seed missing on one side is left out
    runs['learnable'].pop(1)
    assert report.paired(runs, 'meld', 'learnable', 'PQ_th') == [2.0, 1.0]
    text = report.markdown(runs, ['meld', 'learnable'], {'meld': '10 + 20'}, 't')
    assert '| meld ≥'.replace('≥', '>=') in text
    assert '| meld >= learnable on things | PQ_th | 1.50 ± 0.71 | held |' in text


def test_metric_columns_are_found_by_unique_suffix():
    metrics = {'syn_coco_instance/coco/segm_mAP': 0.143, 'syn_coco_panoptic/panoptic/PQ': 22.5,
               'syn_coco_panoptic/panoptic/PQ_th': 6.4}
    assert report.metric_value(metrics, '/coco/segm_mAP', 100.0) == pytest.approx(14.3)
    assert report.metric_value(metrics, '/panoptic/PQ', 1.0) == 22.5
    assert report.metric_value(metrics, '/semantic/mIoU', 1.0) is None
    with pytest.raises(KeyError, match='segm_mAP'):
        report.metric_value(dict(metrics, **{'other/coco/segm_mAP': 0.1}), '/coco/segm_mAP', 1.0,
                            'm.json')
