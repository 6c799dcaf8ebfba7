"""Box-prompted mask predictors for ``box2mask`` (paper section 3.4 / appendix A.1.3: SAM and
HQ-SAM masks for box-only Objects365), registered in :data:`BOX_PREDICTORS`.

Every predictor maps ``(rgb uint8 [H, W, 3], boxes float [N, 4] xyxy)`` to ``(masks bool
[N, H, W], scores float [N])``; all boxes of an image go into one prompt batch (chunked only
above ``max_boxes`` to bound memory), so the image encoder runs once per image. The model
libraries are imported when a predictor is built, never at module import:

====================  ===========================  ============================================
``type``              package (import name)        checkpoint
====================  ===========================  ============================================
``'sam'``             segment-anything             ``sam_vit_{b,l,h}_*.pth`` (a state dict)
``'hq-sam'``          segment-anything-hq          ``sam_hq_vit_{b,l,h}.pth``
``'sam2'``            sam2 (optional, not in the   a SAM 2 checkpoint + its model config name
                      ``annotation`` extra)
====================  ===========================  ============================================

SAM / HQ-SAM are assembled from their packages' own classes at the sizes of ``model_type``
(``vit_b`` / ``vit_l`` / ``vit_h``); ``arch`` overrides any size (tests build them small).
"""
from __future__ import annotations

import importlib
import warnings
from functools import partial
from typing import Dict, Optional, Tuple

import numpy as np
from mmengine.logging import print_log
from mmengine.registry import Registry

#: Registry of box-prompted mask predictors (``BOX_PREDICTORS.build(dict(type='sam', ...))``).
BOX_PREDICTORS = Registry('box-prompted mask predictor', scope='mmquerymeld')

#: Encoder sizes of the released SAM models (Kirillov et al. 2023, table of model sizes).
SAM_MODEL_TYPES: Dict[str, dict] = {
    'vit_b': dict(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                  encoder_global_attn_indexes=(2, 5, 8, 11)),
    'vit_l': dict(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
                  encoder_global_attn_indexes=(5, 11, 17, 23)),
    'vit_h': dict(encoder_embed_dim=1280, encoder_depth=32, encoder_num_heads=16,
                  encoder_global_attn_indexes=(7, 15, 23, 31)),
}
#: The sizes shared by all released SAM models.
SAM_COMMON = dict(image_size=1024, patch_size=16, window_size=14, mlp_ratio=4.0,
                  prompt_embed_dim=256, mask_in_chans=16, decoder_depth=2, decoder_mlp_dim=2048,
                  decoder_num_heads=8, iou_head_depth=3, iou_head_hidden_dim=256)

_EXTRA_HINT = "pip install 'mmquerymeld[annotation]' (or: pip install -r requirements/annotation.txt)"


def _require(module: str, package: str, hint: str = _EXTRA_HINT):
    try:
        with warnings.catch_warnings():
            # segment-anything-hq re-registers timm's TinyViT names at import
            warnings.filterwarnings('ignore', message='Overwriting tiny_vit', category=UserWarning)
            return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f'this box predictor needs the {package!r} package ({module}); '
                          f'install it with: {hint}') from err


def sam_arch(model_type: str = 'vit_b', arch: Optional[dict] = None) -> dict:
    """The full SAM size dict of ``model_type`` with ``arch`` overrides applied."""
    if model_type not in SAM_MODEL_TYPES:
        raise KeyError(f'unknown SAM model_type {model_type!r}; one of {sorted(SAM_MODEL_TYPES)}')
    out = dict(SAM_COMMON, **SAM_MODEL_TYPES[model_type])
    unknown = set(arch or {}) - set(out)
    if unknown:
        raise KeyError(f'unknown SAM arch keys {sorted(unknown)}; known: {sorted(out)}')
    out.update(arch or {})
    out['encoder_global_attn_indexes'] = tuple(out['encoder_global_attn_indexes'])
    return out


def build_sam_model(arch: dict, hq: bool = False):
    """Assemble ``Sam`` from segment-anything's (``hq``: segment-anything-hq's) classes.

    Args:
        arch: A :func:`sam_arch` dict.
        hq: Build HQ-SAM (``MaskDecoderHQ``, fed by the encoder's early global-attention output).

    Returns:
        The ``Sam`` module in eval mode with random weights.
    """
    import torch
    name = 'segment_anything_hq' if hq else 'segment_anything'
    m = _require(f'{name}.modeling', name.replace('_', '-'))
    a = arch
    grid = a['image_size'] // a['patch_size']
    encoder = m.ImageEncoderViT(
        img_size=a['image_size'], patch_size=a['patch_size'], embed_dim=a['encoder_embed_dim'],
        depth=a['encoder_depth'], num_heads=a['encoder_num_heads'], mlp_ratio=a['mlp_ratio'],
        out_chans=a['prompt_embed_dim'], qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
        window_size=a['window_size'], global_attn_indexes=a['encoder_global_attn_indexes'])
    prompt = m.PromptEncoder(embed_dim=a['prompt_embed_dim'], image_embedding_size=(grid, grid),
                             input_image_size=(a['image_size'], a['image_size']),
                             mask_in_chans=a['mask_in_chans'])
    transformer = m.TwoWayTransformer(depth=a['decoder_depth'],
                                      embedding_dim=a['prompt_embed_dim'],
                                      mlp_dim=a['decoder_mlp_dim'],
                                      num_heads=a['decoder_num_heads'])
    dec_kw = dict(num_multimask_outputs=3, transformer=transformer,
                  transformer_dim=a['prompt_embed_dim'], iou_head_depth=a['iou_head_depth'],
                  iou_head_hidden_dim=a['iou_head_hidden_dim'])
    decoder = (m.MaskDecoderHQ(vit_dim=a['encoder_embed_dim'], **dec_kw) if hq
               else m.MaskDecoder(**dec_kw))
    sam = m.Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
                pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return sam.eval()


def load_state_dict_file(path: str):
    """A state dict from ``path`` (plain, or under ``'state_dict'`` / ``'model'``), on CPU."""
    import torch
    obj = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f'{path}: expected a state dict, got {type(obj).__name__}')
    return obj


class BoxPredictor:
    """Interface: ``predict(rgb, boxes) -> (masks bool [N, H, W], scores float32 [N])``."""

    def predict(self, rgb: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


@BOX_PREDICTORS.register_module(name='sam')
class SamBoxPredictor(BoxPredictor):
    """SAM (segment-anything) prompted with boxes, one prompt batch per image.

    Args:
        checkpoint: State-dict file of the model; ``None`` keeps random weights (benchmarks and
            tests only; a warning is logged).
        model_type: ``'vit_b'``, ``'vit_l'`` or ``'vit_h'``.
        arch: Overrides of :data:`SAM_COMMON` / :data:`SAM_MODEL_TYPES` sizes.
        device: Torch device string (``'cpu'``, ``'cuda:0'``).
        multimask: Predict SAM's three masks per box and keep the one with the highest predicted
            IoU; default one mask (box prompts are unambiguous).
        max_boxes: Most boxes per decoder call (memory bound; the encoder runs once per image).
        strict: Strict state-dict loading.
    """

    hq = False

    def __init__(self, checkpoint: Optional[str] = None, model_type: str = 'vit_b',
                 arch: Optional[dict] = None, device: str = 'cpu', multimask: bool = False,
                 max_boxes: int = 64, strict: bool = True) -> None:
        import torch
        pkg = 'segment_anything_hq' if self.hq else 'segment_anything'
        lib = _require(pkg, pkg.replace('_', '-'))
        self.model = build_sam_model(sam_arch(model_type, arch), hq=self.hq)
        if checkpoint:
            missing, unexpected = self.model.load_state_dict(load_state_dict_file(checkpoint),
                                                             strict=strict)
            if missing or unexpected:
                print_log(f'{checkpoint}: missing keys {missing[:5]}, unexpected keys '
                          f'{unexpected[:5]}', logger='current', level=30)
        else:
            print_log(f'{type(self).__name__}: no checkpoint, RANDOM weights (benchmark/test '
                      'only: the masks mean nothing)', logger='current', level=30)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.predictor = lib.SamPredictor(self.model)
        self.multimask = bool(multimask)
        self.max_boxes = int(max_boxes)
        if self.max_boxes < 1:
            raise ValueError(f'max_boxes must be >= 1, got {max_boxes}')

    def _decode(self, boxes) -> Tuple['torch.Tensor', 'torch.Tensor']:  # noqa: F821
        """Masks ``[n, C, H, W]`` bool and IoU predictions ``[n, C]`` for transformed boxes."""
        extra = dict(hq_token_only=False) if self.hq else {}
        masks, iou, _ = self.predictor.predict_torch(None, None, boxes=boxes,
                                                     multimask_output=self.multimask, **extra)
        return masks, iou

    def predict(self, rgb: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Masks for ``boxes`` (float ``[N, 4]`` xyxy, image pixels) on ``rgb`` (``[H, W, 3]``).

        Returns:
            ``masks`` bool ``[N, H, W]`` and ``scores`` float32 ``[N]`` (predicted IoU).
        """
        import torch
        h, w = rgb.shape[:2]
        if len(boxes) == 0:
            return np.zeros((0, h, w), bool), np.zeros((0, ), np.float32)
        with torch.inference_mode():
            self.predictor.set_image(rgb, image_format='RGB')
            tb = torch.as_tensor(np.asarray(boxes, np.float32), device=self.device)
            tb = self.predictor.transform.apply_boxes_torch(tb, (h, w))
            out_m, out_s = [], []
            for s in range(0, len(tb), self.max_boxes):
                masks, iou = self._decode(tb[s:s + self.max_boxes])
                best = iou.argmax(dim=1)  # C == 1 without multimask
                rows = torch.arange(len(best), device=best.device)
                out_m.append(masks[rows, best].cpu().numpy().astype(bool))
                out_s.append(iou[rows, best].float().cpu().numpy())
            self.predictor.reset_image()
        return np.concatenate(out_m), np.concatenate(out_s).astype(np.float32)


@BOX_PREDICTORS.register_module(name='hq-sam')
class HQSamBoxPredictor(SamBoxPredictor):
    """HQ-SAM (segment-anything-hq; Ke et al. 2023): SAM with the HQ output token, whose mask
    (added to SAM's) is the output. Arguments as :class:`SamBoxPredictor`."""

    hq = True


@BOX_PREDICTORS.register_module(name='sam2')
class Sam2BoxPredictor(BoxPredictor):
    """SAM 2 (the ``sam2`` package) through its ``SAM2ImagePredictor``, all boxes in one batch.

    ``sam2`` is not part of the ``annotation`` extra (it builds CUDA code against the installed
    torch and pins its own torch range); install it yourself where it fits your torch. Not
    exercised by this repository's tests (the package is absent there).

    Args:
        checkpoint: SAM 2 checkpoint file.
        model_cfg: SAM 2 model config name (e.g. ``'configs/sam2.1/sam2.1_hiera_b+.yaml'``).
        device: Torch device string.
        multimask: Keep the best of three masks per box.
    """

    def __init__(self, checkpoint: str, model_cfg: str, device: str = 'cpu',
                 multimask: bool = False) -> None:
        hint = ('pip install sam2 (optional; not in the annotation extra: it must build against '
                'your torch, see https://github.com/facebookresearch/sam2)')
        build = _require('sam2.build_sam', 'sam2', hint)
        image_predictor = _require('sam2.sam2_image_predictor', 'sam2', hint)
        model = build.build_sam2(model_cfg, checkpoint, device=device)
        self.predictor = image_predictor.SAM2ImagePredictor(model)
        self.multimask = bool(multimask)

    def predict(self, rgb: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        import torch
        h, w = rgb.shape[:2]
        if len(boxes) == 0:
            return np.zeros((0, h, w), bool), np.zeros((0, ), np.float32)
        with torch.inference_mode():
            self.predictor.set_image(rgb)
            masks, scores, _ = self.predictor.predict(box=np.asarray(boxes, np.float32),
                                                      multimask_output=self.multimask)
        masks = np.asarray(masks).reshape(len(boxes), -1, h, w)
        scores = np.asarray(scores).reshape(len(boxes), -1)
        best = scores.argmax(1)
        rows = np.arange(len(boxes))
        return masks[rows, best] > 0, scores[rows, best].astype(np.float32)
