"""The Table 2 query strategies build from configs that inherit one base; parameter count."""
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmquerymeld.utils import register_all_modules

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
STRATEGIES = {'meld': (100, 300), 'learnable': (400, 0), 'conditional': (0, 400)}


def _cfg(name):
    return Config.fromfile(osp.join(ROOT, 'configs', 'querymeld', f'querymeld_r50_{name}.py'))


def test_strategy_configs_share_one_base():
    cfgs = {name: _cfg(name) for name in STRATEGIES}
    for name, (nl, nc) in STRATEGIES.items():
        head = cfgs[name].model.head
        assert (head.num_learnable_queries, head.num_conditional_queries) == (nl, nc)
        assert cfgs[name].default_scope == 'mmdet'
        assert 'mmquerymeld' in cfgs[name].custom_imports.imports
    # apart from the query counts, the model configs are identical (one base)
    flat = {}
    for name, cfg in cfgs.items():
        model = cfg.model.to_dict()
        model['head'].pop('num_learnable_queries')
        model['head'].pop('num_conditional_queries')
        flat[name] = model
    assert flat['meld'] == flat['learnable'] == flat['conditional']
    assert flat['meld']['head']['decoder']['num_layers'] == 9
    assert flat['meld']['head']['pixel_decoder']['encoder']['num_layers'] == 6


@pytest.mark.parametrize('name', list(STRATEGIES))
def test_strategy_models_build(name):
    from mmdet.registry import MODELS
    register_all_modules()
    cfg = _cfg(name)
    # a small text tower keeps the test fast; the strategy is what is checked
    cfg.model.head.text_encoder.model_name = 'QM-Tiny'
    cfg.model.head.text_encoder.pretrained = None  # the paper config's 'openai' needs network
    model = MODELS.build(cfg.model)
    nl, nc = STRATEGIES[name]
    head = model.head
    assert head.num_queries == 400 and head.query_types.tolist() == [0] * nl + [1] * nc
    assert hasattr(head.query_generator, 'query_selector') == (nc > 0)
    assert hasattr(head.query_generator, 'learnable_content') == (nl > 0)
    modes = {layer.dual_attn.mode for layer in head.decoder.layers}
    assert modes == ({'bidirectional'} if name == 'meld' else {'none'})


def test_count_params_script():
    cfg = osp.join(ROOT, 'configs', 'querymeld', 'querymeld_r50_conditional.py')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    res = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analysis', 'count_params.py'),
                          cfg], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    print(res.stdout)
    lines = {line.split('  ')[1].strip(): line for line in res.stdout.splitlines()
             if line.startswith('  ')}
    assert 'total without text tower' in lines and 'head.decoder' in lines
    without = float(lines['total without text tower'].split()[-2])
    total = float(lines['total'].split()[-2])
    # the per-component lines add up to the printed total
    parts = [float(line.split()[-2]) for name, line in lines.items()
             if not name.startswith('total')]
    assert sum(parts) == pytest.approx(total, abs=0.05)
    # R50 (23.5 M) + Mask DINO-sized pixel decoder (9.2 M) and decoder (13.9 M) + heads: 47.4 M;
    # leaving out the decoder or the pixel decoder would fall below the band
    assert 45 < without < 50
    assert float(lines['head.decoder'].split()[-2]) > 10
    assert 'Mask DINO R50' in res.stdout
