"""tools/analysis/gpu_check.sh: the dry run (same steps, tiny, CPU) and the GPU run's config."""
import json
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))


def test_gpu_check_dry_run(tmp_path):
    env = dict(os.environ, GPU_CHECK_WORK=str(tmp_path), OMP_NUM_THREADS='1', PYTHON=sys.executable)
    env.pop('OUT', None)
    proc = subprocess.run(['bash', osp.join(REPO, 'tools', 'analysis', 'gpu_check.sh'),
                           '--dry-run'], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    line = [x for x in out.splitlines() if x.startswith('GPU_CHECK_RESULT ')][-1]
    result = json.loads(line[len('GPU_CHECK_RESULT '):])
    assert result['ok'] and result['amp'] and result['device'] == 'cpu'
    assert result['msda']['pytorch_finite'] and not result['msda']['compared']
    assert result['iters'] == 3 and result['losses_finite']
    assert result['iters_per_s'] > 0 and result['cpu_max_rss_mb'] > 0
    assert result['first_loss'] > 0 and result['last_loss'] > 0
    assert osp.isfile(tmp_path / 'gpu_check.log')
    assert 'GPU_CHECK_RESULT' in (tmp_path / 'gpu_check.log').read_text()


def test_gpu_run_config(tmp_path):
    """The GPU run's config: R50 meld, random init, every synthetic source at 1024 px."""
    from benchmark_gpucheck import write_config
    from mmengine.config import Config
    path = write_config(str(tmp_path / 'cfg.py'),
                        osp.join(REPO, 'configs', 'querymeld', 'querymeld_r50_meld.py'),
                        '/data/world', 1024, 50, workers=8, batch_size=2)
    cfg = Config.fromfile(path)
    assert cfg.model.head.num_learnable_queries == 100
    assert cfg.model.head.num_conditional_queries == 300
    assert cfg.model.backbone.init_cfg is None and cfg.model.head.text_encoder.pretrained is None
    assert cfg.train_cfg.max_iters == 50 and cfg.val_dataloader is None
    assert cfg.custom_hooks == [dict(type='GpuCheckTimerHook')]
    sources = cfg.train_dataloader.dataset.sources
    assert {s['task'] for s in sources} >= {'panoptic', 'semantic', 'referring', 'foreground',
                                            'detection', 'instance'}
    for source in sources:
        assert source['dataset']['data_root'].startswith('/data/world')
        for step in source['pipeline']:
            for key in ('scale', 'crop_size'):
                if key in step:
                    assert tuple(step[key]) == (1024, 1024), (source['name'], step)
