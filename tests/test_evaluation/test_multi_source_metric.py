"""MultiSourceMetric: routing, per-source dataset_meta, prefixes, means, and ranks."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
from mmengine.evaluator import Evaluator

from eval_samples import referring_case
from mmquerymeld.evaluation import MultiSourceMetric
from multi_source_world import world

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
PQ_COCO = 100 * (0.8 / 1.5 + 0 + 1) / 3  # test_panoptic_metric's hand-computed case


def _single_process():
    samples, cfg, meta = world()
    evaluator = Evaluator(cfg)
    evaluator.dataset_meta = meta
    for i in range(0, len(samples), 3):  # batches of 3 mix sources
        evaluator.process(samples[i:i + 3])
    return evaluator.evaluate(len(samples))


def test_routing_prefixes_and_means():
    res = _single_process()
    assert res['coco_pano/panoptic/PQ'] == pytest.approx(PQ_COCO, abs=1e-3)
    assert res['coco_pano/panoptic/stuff_by_learnable'] == pytest.approx(50.0)
    # ade_pano's thing/stuff came from dataset_meta['sources']['ade_pano']
    assert res['ade_pano/panoptic/PQ_th'] == pytest.approx(100.0)
    assert res['ade_pano/panoptic/PQ_st'] == pytest.approx(100.0)
    assert res['refcoco/referring/cIoU'] == pytest.approx(100 * 21 / 32, abs=1e-3)
    assert res['sod/foreground/MAE'] == pytest.approx(0.0, abs=1e-6)  # 0.8 / 0.2 min-max normalised
    assert res['sod/foreground/maxF'] == pytest.approx(1.0)
    assert res['ade_sem/semantic/mIoU'] == pytest.approx(50.0, abs=0.01)
    assert res['mean_PQ'] == pytest.approx((PQ_COCO + 100) / 2, abs=1e-3)
    # a source without samples reports nothing; a source without a metric is skipped
    assert not any(k.startswith(('never_seen/', 'not_evaluated/')) for k in res)


def test_results_live_in_the_wrapper_one_entry_per_sample():
    samples, cfg, meta = world()
    metric = MultiSourceMetric(**{k: v for k, v in cfg.items() if k != 'type'})
    metric.dataset_meta = meta
    metric.process({}, [s.to_dict() for s in samples])
    assert len(metric.results) == len(samples)
    assert all(not m.results for subs in metric.metrics.values() for m in subs)
    assert metric.metrics['ade_sem'][0].dataset_meta['classes'] == ('a', 'b', 'c')
    # sources without their own metainfo fall back to the whole dataset_meta
    assert metric.metrics['refcoco'][0].dataset_meta is meta


def test_across_two_ranks_matches_single_process(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = osp.join(tmp_path, 'metrics.json')
    env = dict(os.environ, WORLD_SIZE='2', MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
               PYTHONPATH=os.pathsep.join([REPO, HERE, os.environ.get('PYTHONPATH', '')]))
    procs = [subprocess.Popen([sys.executable, osp.join(HERE, 'dist_worker.py'), out],
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(2)]
    logs = [p.communicate(timeout=240)[0].decode(errors='replace') for p in procs]
    assert all(p.returncode == 0 for p in procs), '\n'.join(logs)[-3000:]
    with open(out) as f:
        dist_res = json.load(f)
    single = _single_process()
    assert set(dist_res) == set(single)
    for key, value in single.items():
        assert dist_res[key] == pytest.approx(float(value), abs=1e-6), key


def test_missing_source_is_a_clear_error_unless_defaulted():
    s = referring_case()[0]  # no 'source' in its metainfo
    metric = MultiSourceMetric(metrics=dict(refcoco=dict(type='ReferringMetric')))
    metric.dataset_meta = {}
    with pytest.raises(KeyError, match='r1.png'):
        metric.process({}, [s.to_dict()])
    metric = MultiSourceMetric(metrics=dict(refcoco=dict(type='ReferringMetric')),
                               default_source='refcoco')
    metric.dataset_meta = {}
    metric.process({}, [s.to_dict()])
    assert metric.evaluate(1)['refcoco/referring/mIoU'] == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_several_metrics_per_source_and_key_conflicts():
    samples = referring_case()
    for s in samples:
        s.set_metainfo(dict(source='ref'))
    metric = MultiSourceMetric(metrics=dict(ref=[dict(type='ReferringMetric'),
                                                 dict(type='ReferringMetric', prefix='strict',
                                                      prec_thresholds=(0.95, ))]))
    metric.dataset_meta = {}
    metric.process({}, samples)
    res = metric.evaluate(2)
    assert res['ref/referring/Prec@0.5'] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert res['ref/strict/Prec@0.95'] == pytest.approx(100 / 3, abs=1e-3)
    clash = MultiSourceMetric(metrics=dict(ref=[dict(type='ReferringMetric')] * 2))
    clash.dataset_meta = {}
    clash.process({}, samples)
    with pytest.raises(KeyError, match='ref/referring/cIoU'):
        clash.evaluate(2)


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match='metrics'):
        MultiSourceMetric(metrics={})
    with pytest.raises(ValueError, match='unknown_src'):
        MultiSourceMetric(metrics=dict(a=dict(type='ReferringMetric')),
                          mean_over=dict(name='m', key='referring/cIoU', sources=['unknown_src']))


def test_no_samples_at_all_returns_empty_dict():
    metric = MultiSourceMetric(metrics=dict(a=dict(type='ReferringMetric')),
                               mean_over=dict(name='m', key='referring/cIoU'))
    metric.dataset_meta = {}
    assert metric.evaluate(0) == {}


def test_undecodable_images_are_left_out_and_counted():
    """Samples marked ``bad_image`` (MultiSourceDataset(on_bad_image='skip')) do not reach their
    source's metric and are counted as ``<source>/skipped_images``."""
    samples, cfg, meta = world()
    clean = _single_process()
    evaluator = Evaluator(cfg)
    evaluator.dataset_meta = meta
    refcoco = [s for s in samples if s.metainfo['source'] == 'refcoco']
    broken = []
    for s in refcoco[:1] * 2:  # two placeholders of one source, each with its path
        b = s.clone()
        b.set_metainfo(dict(bad_image='img/broken.jpg'))
        broken.append(b)
    evaluator.process(samples + broken)
    res = evaluator.evaluate(len(samples) + len(broken))
    assert res.pop('refcoco/skipped_images') == 2
    assert res == clean  # the placeholders changed no metric
    assert not any(k.endswith('skipped_images') for k in clean)  # only when something skipped
