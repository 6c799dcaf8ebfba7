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


def test_eval_world_needs_a_variant_and_a_source_outside_the_root_is_named():
    with pytest.raises(SystemExit):
        query_study.parse_args(['--eval-world', 'data/held_out'])
    with pytest.raises(ValueError, match='test source 0'):
        query_study.eval_world_options(query_study.DEFAULT_CONFIG, 'data/elsewhere',
                                       'data/held_out')
