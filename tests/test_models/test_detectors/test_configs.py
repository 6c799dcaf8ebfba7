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


def _count(params) -> int:
    """Elements of distinct parameters (a shared module counted once)."""
    unique = {id(p): p for p in params}
    return sum(p.numel() for p in unique.values())


@pytest.fixture(scope='module')
def meld_and_conditional():
    """The meld and conditional-only R50 models (random weights, the small text tower: it is the
    same in both and cancels out of every difference below)."""
    from mmdet.registry import MODELS
    register_all_modules()
    models = {}
    for name in ('meld', 'conditional'):
        cfg = _cfg(name)
        cfg.model.backbone.init_cfg = None
        cfg.model.head.text_encoder.model_name = 'QM-Tiny'
        cfg.model.head.text_encoder.pretrained = None
        models[name] = MODELS.build(cfg.model)
    return models


def test_meld_parameters_are_conditional_plus_dual_attention(meld_and_conditional):
    """The meld config differs from the conditional-only one (same base) by exactly the dual
    attention of every decoder layer and the learnable queries (content C + anchor 4 each)."""
    meld, cond = meld_and_conditional['meld'], meld_and_conditional['conditional']
    dual = _count(p for layer in meld.head.decoder.layers for p in layer.dual_attn.parameters())
    # two 8-head attentions, one per direction (2 x (4 C^2 + 4 C)), and a LayerNorm (2 C) per
    # layer, C = 256, 9 layers: 4.74 M (a shared attention: half)
    assert dual == 9 * (2 * (4 * 256 ** 2 + 4 * 256) + 2 * 256)
    assert _count(p for layer in cond.head.decoder.layers
                  for p in layer.dual_attn.parameters()) == 0
    head_cfg = _cfg('meld').model.head
    learnable = head_cfg.num_learnable_queries * (head_cfg.embed_dims + 4)
    assert _count(meld.head.decoder.parameters()) - _count(cond.head.decoder.parameters()) == dual
    assert _count(meld.parameters()) - _count(cond.parameters()) == dual + learnable


def test_count_params_script(meld_and_conditional):
    """The script on the meld config (the paper's model): its decoder line counts the dual
    attention, and the total without the text tower is in a band that excludes the model
    without it (the conditional-only config: 47.4 M)."""
    cfg = osp.join(ROOT, 'configs', 'querymeld', 'querymeld_r50_meld.py')
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
    # the printed decoder count (2 decimals, in M) is the decoder's, dual attention included
    meld, cond = meld_and_conditional['meld'], meld_and_conditional['conditional']
    decoder = float(lines['head.decoder'].split()[-2])
    assert decoder == pytest.approx(_count(meld.head.decoder.parameters()) / 1e6, abs=0.006)
    assert decoder - _count(cond.head.decoder.parameters()) / 1e6 > 4.7
    # R50 (23.5 M) + Mask DINO-sized pixel decoder (9.2 M) and decoder (13.9 M) + dual attention
    # (4.7 M) + heads: 52.2 M; with one shared attention per layer (49.8 M) or none (47.4 M),
    # or without the decoder or the pixel decoder, it would fall below the band
    assert 51.5 < without < 53.5
    assert 'Mask DINO R50' in res.stdout
