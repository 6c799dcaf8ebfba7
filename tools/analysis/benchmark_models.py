"""Models of the side-by-side benchmark (tools/analysis/benchmark.py), from public configs.

* ``querymeld``: QueryMeldNet from ``configs/querymeld/querymeld_r50_meld.py`` (R50, 100
  learnable + 300 conditional queries, ViT-B-16 text tower), or with ``quick`` the model of the
  tiny demo config ``configs/demo/querymeld_tiny_synthetic.py``.
* ``mask2former``: mmdet's own Mask2Former R50 panoptic config from the installed package
  (``mmdet/.mim/configs/mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py``, 100
  queries), or with ``quick`` the same config shrunk (ResNet-18 at 16 base channels, 64 dims,
  2 encoder / 3 decoder layers, 20 queries).

Both use random weights: every pretrained ``init_cfg`` / text-tower tag is set to None so that
nothing downloads. Mask2Former's LSJ ``BatchFixedSizePad`` (pads every batch to 1024x1024) is
dropped so that both models see the same padded input (size divisor 32).
"""
import os.path as osp
from typing import Tuple

from mmengine.config import Config, ConfigDict

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
QM_CONFIG = osp.join(REPO, 'configs', 'querymeld', 'querymeld_r50_meld.py')
QM_QUICK_CONFIG = osp.join(REPO, 'configs', 'demo', 'querymeld_tiny_synthetic.py')
M2F_CONFIG = osp.join('mask2former', 'mask2former_r50_8xb2-lsj-50e_coco-panoptic.py')
MODELS = ('mask2former', 'querymeld')


def mmdet_config_path(rel: str) -> str:
    """Path of one of mmdet's own configs inside the installed package (``mmdet/.mim``)."""
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmdet config not found in the installed package: {path}')
    return path


def _no_pretrained(cfg: ConfigDict) -> None:
    """Set every ``init_cfg`` of type Pretrained and every text-tower tag to None (in place)."""
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            cfg['init_cfg'] = None
        if 'pretrained' in cfg and isinstance(cfg.get('type'), str) and \
                'Text' in cfg['type']:
            cfg['pretrained'] = None
        for value in cfg.values():
            _no_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _no_pretrained(value)


def _shrink_mask2former(model: ConfigDict) -> None:
    """Shrink Mask2Former in place (quick mode: a model that runs in well under a second)."""
    dims = 64
    model.backbone.update(depth=18, base_channels=16, norm_cfg=dict(type='BN', requires_grad=True),
                          norm_eval=False)
    head = model.panoptic_head
    head.update(in_channels=[16, 32, 64, 128], feat_channels=dims, out_channels=dims,
                num_queries=20)
    enc = head.pixel_decoder.encoder
    enc.num_layers = 2
    enc.layer_cfg.self_attn_cfg.update(embed_dims=dims, num_heads=4)
    enc.layer_cfg.ffn_cfg.update(embed_dims=dims, feedforward_channels=128)
    head.pixel_decoder.positional_encoding.num_feats = dims // 2
    head.positional_encoding.num_feats = dims // 2
    dec = head.transformer_decoder
    dec.num_layers = 3
    dec.layer_cfg.self_attn_cfg.update(embed_dims=dims, num_heads=4)
    dec.layer_cfg.cross_attn_cfg.update(embed_dims=dims, num_heads=4)
    dec.layer_cfg.ffn_cfg.update(embed_dims=dims, feedforward_channels=128)
    model.train_cfg.num_points = 1024


def model_config(name: str, quick: bool = False, m2f_instance_on: bool = True
                 ) -> Tuple[ConfigDict, ConfigDict]:
    """The model config and optimizer-wrapper config of one benchmarked model.

    Args:
        name: ``'querymeld'`` or ``'mask2former'``.
        quick: Tiny variants (for tests of the harness).
        m2f_instance_on: Keep mmdet's ``test_cfg.instance_on=True`` for Mask2Former (its config
            post-processes every image for panoptic *and* instance results); False: panoptic
            only.

    Returns:
        tuple: ``(model_cfg, optim_wrapper_cfg)``.
    """
    if name == 'querymeld':
        cfg = Config.fromfile(QM_QUICK_CONFIG if quick else QM_CONFIG)
    elif name == 'mask2former':
        cfg = Config.fromfile(mmdet_config_path(M2F_CONFIG))
    else:
        raise ValueError(f'unknown model {name!r}; expected one of {MODELS}')
    model = cfg.model
    _no_pretrained(model)
    if name == 'mask2former':
        model.data_preprocessor.batch_augments = None
        model.test_cfg.instance_on = bool(m2f_instance_on)
        if quick:
            _shrink_mask2former(model)
    optim = ConfigDict(cfg.optim_wrapper)
    optim.type = 'OptimWrapper'
    return model, optim


def build_model(name: str, quick: bool = False, m2f_instance_on: bool = True,
                device: str = 'cpu'):
    """Build one benchmarked model with random weights (``init_weights`` run, nothing loaded).

    Returns:
        tuple: ``(model, optim_wrapper_cfg)``; the model is on ``device`` in train mode.
    """
    import mmquerymeld  # noqa: F401  (registers the QueryMeldNet modules)
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model_cfg, optim_cfg = model_config(name, quick, m2f_instance_on)
    model = DET_MODELS.build(model_cfg)
    model.init_weights()
    return model.to(device), optim_cfg


def count_params(model) -> int:
    """Number of parameters (all, trainable or not)."""
    return sum(p.numel() for p in model.parameters())
