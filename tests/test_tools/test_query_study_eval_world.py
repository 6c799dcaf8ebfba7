"""tools/analysis/query_study.py --eval-world: every test source is re-rooted, training is not."""
import os.path as osp
import sys

import pytest
from mmengine.config import Config, DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))

import query_study  # noqa: E402


def test_eval_world_options_reroot_every_test_source_and_nothing_else():
    config = query_study.DEFAULT_CONFIG
    options = query_study.eval_world_options(config, 'data/synthetic', 'data/held_out')
    cfg = Config.fromfile(config)
    before_train = [s['dataset']['data_root'] for s in cfg.train_dataloader.dataset.sources]
    action = DictAction(option_strings=['--cfg-options'], dest='cfg_options')
    ns = type('NS', (), {})()
    action(None, ns, options)
    cfg.merge_from_dict(ns.cfg_options)
    roots = [s['dataset']['data_root'] for s in cfg.test_dataloader.dataset.sources]
    assert len(roots) >= 5 and len(options) == len(roots) + 2
    assert all(r.startswith('data/held_out/') for r in roots), roots
    assert 'data/held_out/salient/DUTS' in roots  # sub-folders of the world are kept
    assert [s['dataset']['data_root'] for s in cfg.train_dataloader.dataset.sources] == \
        before_train
    # the COCO evaluators read their ground truth from the held-out world too
    files = [m['ann_file'] for m in cfg.test_evaluator[0]['metrics'].values() if 'ann_file' in m]
    assert len(files) == 2 and all(f.startswith('data/held_out/') for f in files), files


def test_eval_world_default_none_and_a_source_outside_the_root_is_named():
    assert query_study.parse_args([]).eval_world == 'data/synthetic_eval64'
    assert query_study.parse_args(['--data-root', 'w/', '--eval-world-val', '9']).eval_world == \
        'w_eval9'
    assert query_study.parse_args(['--eval-world', 'none']).eval_world is None
    with pytest.raises(ValueError, match='test source 0'):
        query_study.eval_world_options(query_study.DEFAULT_CONFIG, 'data/elsewhere',
                                       'data/held_out')


def test_report_only_tables_the_evaluated_runs_and_runs_nothing(tmp_path, monkeypatch):
    """A study shared by sessions: the table of the runs evaluated so far, no training."""
    import json
    work = tmp_path / 'study'
    values = {('meld', 0): (30.0, 10.0, 50.0), ('conditional', 0): (28.0, 12.0, 44.0)}
    for (strategy, seed), (pq, th, st) in values.items():
        run = work / strategy / f'seed{seed}'
        run.mkdir(parents=True)
        (run / 'metrics.json').write_text(json.dumps({
            'syn_coco_panoptic/panoptic/PQ': pq, 'syn_coco_panoptic/panoptic/PQ_th': th,
            'syn_coco_panoptic/panoptic/PQ_st': st}))
    monkeypatch.setattr(query_study, 'execute', lambda *a: pytest.fail('a run was executed'))
    monkeypatch.chdir(tmp_path)  # the default data root is relative: nothing may appear here
    done = query_study.main(['--work-dir', str(work), '--seeds', '3', '--iters', '10',
                             '--report-only', '--eval-world', 'none'])
    assert done == {'trained': [], 'evaluated': []}
    table = (work / 'query_study.md').read_text()
    meld = next(line for line in table.splitlines() if line.startswith('| meld (10 + 20) |'))
    assert '| 1 |' in meld and '30.0' in meld and '50.0' in meld
    assert '| meld − conditional | 1 |' in table
    assert (work / 'query_study.png').stat().st_size > 1000
    assert not (tmp_path / 'data').exists()  # no world generated either


def test_baseline_pairs_an_ablation_with_the_default_study_by_seed(tmp_path, monkeypatch):
    """A training ablation (its own work dir) against the default study: seed-paired
    differences per column and the issue's rule; a seed only one side has is left out."""
    import json

    def write(work, seed, pq, th):
        run = work / 'meld' / f'seed{seed}'
        run.mkdir(parents=True)
        (run / 'metrics.json').write_text(json.dumps({
            'syn_coco_panoptic/panoptic/PQ': pq, 'syn_coco_panoptic/panoptic/PQ_th': th}))

    base, abl = tmp_path / 'study', tmp_path / 'ablation'
    for seed, (pq, th) in enumerate([(30.0, 10.0), (34.0, 12.0), (40.0, 20.0)]):
        write(base, seed, pq, th)
    for seed, (pq, th) in enumerate([(33.0, 9.0), (36.0, 13.0)]):  # PQ +3, +2; PQ_th -1, +1
        write(abl, seed, pq, th)
    monkeypatch.setattr(query_study, 'execute', lambda *a: pytest.fail('a run was executed'))
    monkeypatch.chdir(tmp_path)
    query_study.main(['--work-dir', str(abl), '--seeds', '3', '--iters', '10', '--strategies',
                      'meld', '--report-only', '--eval-world', 'none', '--baseline', str(base),
                      '--cfg-options', 'model.x=1'])
    text = (abl / 'query_study_vs_baseline.md').read_text()
    assert '`model.x=1`' in text
    rows = {line.split(' | ')[2]: line.split(' | ') for line in text.splitlines()
            if line.startswith('| meld | 2 |')}
    cols = text.splitlines()[2].split(' | ')
    pq, th = cols.index('PQ'), cols.index('PQ_th')
    assert rows['difference'][pq] == '2.5 ± 0.7' and rows['verdict'][pq] == 'held'
    assert rows['difference'][th] == '0.0 ± 1.4' and rows['verdict'][th] == 'unresolved'


def test_variant_tables_show_the_variant_options_not_the_eval_world_rerooting(tmp_path,
                                                                               monkeypatch):
    """The held-out world's re-rooting options reach every test command but are not the
    variant's test_cfg change: ablations.md shows only the latter, the JSON names the world."""
    import json
    work = tmp_path / 'study'
    for name in ('metrics.json', 'metrics_thr.json'):
        run = work / 'meld' / 'seed0'
        run.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(json.dumps({'syn_coco_panoptic/panoptic/PQ': 30.0}))
    monkeypatch.setattr(query_study, 'execute', lambda *a: pytest.fail('a run was executed'))
    monkeypatch.chdir(tmp_path)
    common = ['--work-dir', str(work), '--seeds', '1', '--iters', '10', '--strategies', 'meld',
              '--report-only', '--eval-world', 'data/held_out']
    query_study.main(common)
    query_study.main(common + ['--variant', 'thr', '--test-options',
                               'model.test_cfg.panoptic.object_mask_thr=0.25'])
    data = json.loads((work / 'query_study_thr.json').read_text())
    assert data['test_options'] == ['model.test_cfg.panoptic.object_mask_thr=0.25']
    assert data['eval_world'] == 'data/held_out'
    table = (work / 'ablations.md').read_text()
    assert '| thr | model.test_cfg.panoptic.object_mask_thr=0.25 | meld |' in table
    assert 'data_root' not in table


def test_world_style_trains_and_evaluates_on_its_own_worlds(tmp_path, monkeypatch, capsys):
    """--world-style coco: every train source reads data/synthetic_coco, every test source the
    held-out coco world; the config's own world is read by no command."""
    monkeypatch.chdir(tmp_path)
    query_study.main(['--work-dir', str(tmp_path / 'w'), '--seeds', '1', '--iters', '10',
                      '--strategies', 'meld', '--world-style', 'coco', '--dry'])
    train_cmd, test_cmd = capsys.readouterr().out.strip().splitlines()
    sources = len(Config.fromfile(query_study.DEFAULT_CONFIG).train_dataloader.dataset.sources)
    assert train_cmd.count('data_root=data/synthetic_coco/') == sources
    assert 'train_dataloader.dataset.sources.4.dataset.data_root=data/synthetic_coco/salient/' \
        'DUTS' in train_cmd
    assert 'data_root=data/synthetic_coco_eval64/' in test_cmd
    assert 'data/synthetic/' not in train_cmd.replace('data/synthetic_coco', '') + \
        test_cmd.replace('data/synthetic_coco', '')
    # the default style changes nothing in training
    assert query_study.train_world_options(query_study.DEFAULT_CONFIG, 'data/synthetic') == []


def test_an_existing_world_of_another_style_or_size_is_refused(tmp_path):
    from mmquerymeld.testing import generate_synthetic_world
    root = str(tmp_path / 'w')
    generate_synthetic_world(root, num_train=2, num_val=1, img_size=48)
    query_study.ensure_world(root, style='default', num_train=2)  # the same world: used
    with pytest.raises(ValueError, match=r"world_info.json: a 'default' world, not the 'coco'"):
        query_study.ensure_world(root, style='coco')
    with pytest.raises(ValueError, match='2 train images per family, not the 160'):
        query_study.ensure_world(root, style='default', num_train=160)
