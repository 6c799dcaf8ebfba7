"""The schedules' paramwise_cfg (the base one and the demo's): no weight decay on embeddings and
the classifier's scalars."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCHEDULE = osp.join(REPO, 'configs', '_base_', 'schedules', 'schedule_50e.py')
DEMO = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
TINY_MODEL = osp.join(REPO, 'configs', '_base_', 'models', 'querymeld_tiny.py')

# parameter-name substrings that must get weight decay 0 (Mask DINO / mmdet Mask2Former exempt
# embeddings), and ones that keep the base decay
NO_DECAY = ('learnable_content', 'learnable_anchors', 'pixel_decoder.level_encoding',
            'text_classifier.logit_scale', 'text_classifier.logit_bias')
KEEP_DECAY = ('decoder.layers.0.ffn.layers.0.0.weight', 'text_classifier.query_proj.weight',
              'backbone.conv1.weight')


@pytest.fixture(scope='module', params=[SCHEDULE, DEMO], ids=['schedule_50e', 'demo'])
def groups_by_name(request):
    from mmdet.registry import MODELS
    from mmquerymeld.utils import register_all_modules
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY_MODEL).model)
    cfg = Config.fromfile(request.param)
    with DefaultScope.overwrite_default_scope('mmdet'):
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    group_of = {id(p): g for g in wrapper.optimizer.param_groups for p in g['params']}
    out = {name: group_of[id(p)] for name, p in model.named_parameters() if id(p) in group_of}
    return out, cfg.optim_wrapper.optimizer


def _matching(groups, key):
    names = [n for n in groups if key in n]
    assert names, f'no trainable parameter named like {key!r}: the schedule key would be dead'
    return names


@pytest.mark.parametrize('key', NO_DECAY)
def test_embeddings_and_classifier_scalars_have_no_weight_decay(groups_by_name, key):
    groups, _ = groups_by_name
    for name in _matching(groups, key):
        assert groups[name]['weight_decay'] == 0.0, name


@pytest.mark.parametrize('key', KEEP_DECAY)
def test_other_weights_keep_the_base_decay(groups_by_name, key):
    groups, optimizer = groups_by_name
    assert optimizer.weight_decay == 0.05
    for name in _matching(groups, key):
        assert groups[name]['weight_decay'] == pytest.approx(0.05), name


def test_backbone_lr_and_norm_decay_unchanged(groups_by_name):
    groups, optimizer = groups_by_name
    backbone = groups['backbone.conv1.weight']
    assert backbone['lr'] == pytest.approx(0.1 * optimizer.lr)
    norms = [n for n in groups if '.norms.' in n or '.gn.' in n]
    assert norms and all(groups[n]['weight_decay'] == 0.0 for n in norms)
