"""tools/analysis/benchmark.py end to end (``--quick``: tiny models, 128 px, subprocesses).

Both commands run side by side (one process each, every case in its own worker process); on an
idle 2-core machine the test takes well under a minute.
"""
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'analysis', 'benchmark.py')
REPEATS = 2


def _start(args, out):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    cmd = [sys.executable, SCRIPT, *args, '--quick', '--repeats', str(REPEATS), '--out', out]
    return cmd, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)


def _finish(cmd, proc):
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, f'{cmd}\n{out[-4000:]}'
    return out


def _check_record(rec):
    assert 'error' not in rec, rec['error']
    assert len(rec['times']) == REPEATS and all(t > 0 for t in rec['times'])
    assert rec['min_s'] <= rec['median_s'] <= rec['max_s'] and rec['median_s'] > 0
    assert rec['peak_mb'] > 0 and rec['model_mb'] > 0 and rec['first_call_s'] > 0


def _table_rows(md_path):
    with open(md_path) as f:
        text = f.read()
    assert 'Machine:' in text and 'torch' in text
    rows = [line for line in text.splitlines() if line.startswith('|')]
    header = [c.strip() for c in rows[0].strip('|').split('|')]
    return header, [[c.strip() for c in row.strip('|').split('|')] for row in rows[2:]]


def test_benchmark_train_and_infer_quick(tmp_path):
    out = str(tmp_path)
    train = _start(['train'], out)
    infer = _start(['infer', '--tasks', 'panoptic', 'foreground', '--vocab', '5'], out)
    _finish(*train)
    _finish(*infer)

    # ---- train: 2 rows (panoptic batch, + 300-box box-only image) x 2 models
    with open(osp.join(out, 'train.json')) as f:
        run = json.load(f)[-1]
    assert run['machine']['cpu'] and run['machine']['torch']
    recs = run['records']
    assert sorted((r['model'], r['box_only']) for r in recs) == [
        ('mask2former', False), ('mask2former', True), ('querymeld', False),
        ('querymeld', True)]
    for rec in recs:
        _check_record(rec)
        assert rec['batch_mb'] > 0 and rec['params_m'] > 0
    header, rows = _table_rows(osp.join(out, 'train.md'))
    assert header[:4] == ['batch', 'model', 'step time, s: median [min-max]', 'x M2F']
    assert any('peak memory' in h for h in header)
    assert len(rows) == 4
    for row in rows:
        assert float(row[2].split()[0]) > 0 and float(row[4]) > 0
        assert row[3].endswith('x') and row[5].endswith('x')
    box_rows = [row for row in rows if '300-box box-only' in row[0]]
    assert len(box_rows) == 2 and any('cannot train on boxes alone' in r[1] for r in box_rows)

    # ---- infer: 128² and 128² from a 320x384 original; M2F anchor + QM panoptic + foreground
    with open(osp.join(out, 'infer.json')) as f:
        recs = json.load(f)[-1]['records']
    assert len(recs) == 6
    for ori in ([128, 128], [320, 384]):
        cases = sorted((r['model'], r['task'], r['vocab']) for r in recs
                       if list(r['ori']) == ori)
        assert cases == [('mask2former', 'panoptic', None), ('querymeld', 'foreground', 1),
                         ('querymeld', 'panoptic', 5)]
    for rec in recs:
        _check_record(rec)
        if rec['task'] == 'panoptic':  # both models keep exactly --segments (quick: 4)
            assert rec['segments'] == 4 and rec['segments_per_rep'] == [4] * REPEATS
        else:
            assert 'segments' not in rec
    header, rows = _table_rows(osp.join(out, 'infer.md'))
    assert header[4].startswith('latency') and header[-1] == 'panoptic segments'
    assert len(rows) == 6
    for row in rows:
        assert float(row[4].split()[0]) > 0 and float(row[6]) > 0 and row[5].endswith('x')
    assert sum(row[-1] == '4' for row in rows) == 4  # M2F + QM panoptic at both inputs
    assert sum('(320x384)' in row[0] for row in rows) == 3


def test_cases_select_exact_task_vocabulary_pairs_per_input():
    sys.path.insert(0, osp.dirname(SCRIPT))
    import benchmark
    args = benchmark.parse_args([
        'infer', '--device', 'cpu', '--size', '1024', '--large-original', 'yes',
        '--max-procs', '3', '--cases', 'panoptic:80', 'panoptic:10000',
        '--large-cases', 'foreground:7', 'semantic:1203', 'instance:80'])
    groups = benchmark.make_groups(args)
    seen = {}
    for group in groups:
        anchor, *cases = group
        assert anchor['model'] == 'mask2former' and len(group) <= 3
        for case in cases:
            assert case['size'] == anchor['size'] and case['ori'] == anchor['ori']
            seen.setdefault(tuple(case['ori']), []).append((case['task'], case['vocab']))
    assert seen == {(1024, 1024): [('panoptic', 80), ('panoptic', 10000)],
                    (2560, 3072): [('foreground', 1), ('semantic', 1203), ('instance', 80)]}
    args.no_large_anchor = True  # the large original without Mask2Former: 3 cases, 1 group
    groups = benchmark.make_groups(args)
    assert [[c['model'] for c in g] for g in groups if tuple(g[0]['ori']) == (2560, 3072)] == \
        [['querymeld'] * 3]
    try:
        benchmark.parse_args(['infer', '--device', 'cpu', '--cases', 'panoptic'])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError('a case without a vocabulary size was accepted')
