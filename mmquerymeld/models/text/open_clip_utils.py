"""open_clip glue: the tiny test architecture, text-tower construction, weights and tokenising.

Only the text tower of an open_clip architecture is built (the classifier never sees images), so a
ViT-L-14 classifier does not pay for its 300M-parameter vision tower. Written against
open_clip_torch 3.3.0 (``open_clip.factory``, ``open_clip.model``, ``open_clip.pretrained``).
"""
import os.path as osp
import pickle
import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import open_clip
import torch
from torch import Tensor, nn

#: The tiny architecture for tests and the demo (text tower: width 64, 2 layers, 2 heads,
#: context 77, embedding 64; a token vision tower only so the config is a valid open_clip one).
QM_TINY_NAME = 'QM-Tiny'
QM_TINY_CFG: Dict[str, Any] = {
    'embed_dim': 64,
    'vision_cfg': {'image_size': 32, 'layers': 1, 'width': 32, 'head_width': 32,
                   'patch_size': 16},
    'text_cfg': {'context_length': 77, 'vocab_size': 49408, 'width': 64, 'heads': 2,
                 'layers': 2},
}


def register_model_config(name: str, cfg: Dict[str, Any], overwrite: bool = False) -> None:
    """Add an architecture to open_clip's model-config registry (``open_clip.list_models()``).

    open_clip's public ``add_model_config`` only reads JSON files; this package ships no data
    files, so the config dict goes into the same registry (``open_clip.factory._MODEL_CONFIGS``,
    the dict ``get_model_config`` / ``create_model`` / ``get_tokenizer`` read).

    Args:
        name: Architecture name, e.g. ``'QM-Tiny'``.
        cfg: open_clip model config with ``embed_dim``, ``vision_cfg`` and ``text_cfg``.
        overwrite: Replace an existing entry of the same name instead of raising.

    Raises:
        ValueError: ``cfg`` lacks a required key, or ``name`` exists with another config.
    """
    missing = [k for k in ('embed_dim', 'vision_cfg', 'text_cfg') if k not in cfg]
    if missing:
        raise ValueError(f'open_clip model config {name!r}: missing keys {missing}')
    registry = open_clip.factory._MODEL_CONFIGS
    if name in registry and registry[name] != cfg and not overwrite:
        raise ValueError(f'open_clip model config {name!r} already registered with another '
                         'config; pass overwrite=True to replace it')
    registry[name] = dict(cfg)


def register_tiny_model() -> None:
    """Register :data:`QM_TINY_CFG` as ``'QM-Tiny'`` (idempotent; done on package import)."""
    register_model_config(QM_TINY_NAME, QM_TINY_CFG, overwrite=True)


def build_text_tower(model_name: str) -> Tuple[nn.Module, Dict[str, Any]]:
    """Build (random init) the text tower of an open_clip architecture, without its vision tower.

    Args:
        model_name: Any name in ``open_clip.list_models()`` (``'ViT-B-16'``, ``'RN50'``,
            ``'convnext_base'``, ``'QM-Tiny'`` ...), or an ``hf-hub:`` / ``local-dir:`` identifier
            whose ``open_clip_config.json`` is reachable.

    Returns:
        ``(tower, model_cfg)``: an ``open_clip.transformer.TextTransformer`` (or
        ``open_clip.hf_model.HFTextEncoder`` for HuggingFace text towers), in fp32, and the
        architecture config.

    Raises:
        KeyError: Unknown architecture.
    """
    # hf-hub:/local-dir: names are resolved by open_clip itself.
    cfg = open_clip.get_model_config(model_name.replace('/', '-') if ':' not in model_name
                                     else model_name)
    if cfg is None:
        raise KeyError(f'model_name: unknown open_clip architecture {model_name!r}; see '
                       f'open_clip.list_models() (e.g. ViT-B-16, ViT-L-14, RN50, {QM_TINY_NAME})')
    text_cfg = dict(cfg['text_cfg'])
    if text_cfg.get('hf_model_name'):
        # Weights come from `pretrained` (a full open_clip checkpoint), not from the HF hub.
        text_cfg['hf_model_pretrained'] = False
    # open_clip.model._build_text_tower is the builder CLIP / CustomTextCLIP call for their text
    # tower; using it directly skips the vision tower entirely.
    tower = open_clip.model._build_text_tower(
        cfg['embed_dim'], text_cfg, quick_gelu=cfg.get('quick_gelu', False), cast_dtype=None)
    return tower, cfg


def is_native_tower(tower: nn.Module) -> bool:
    """Whether ``tower`` is open_clip's own ``TextTransformer`` (token embedding + transformer).

    Args:
        tower: A module from :func:`build_text_tower`.

    Returns:
        True for ``TextTransformer``; False for HuggingFace text encoders.
    """
    return all(hasattr(tower, a) for a in ('token_embedding', 'positional_embedding',
                                            'transformer', 'ln_final'))


def text_embed_dim(tower: nn.Module, cfg: Mapping[str, Any]) -> int:
    """Output dimension of a text tower (its joint-space dimension).

    Args:
        tower: A module from :func:`build_text_tower`.
        cfg: Its architecture config.

    Returns:
        The embedding dimension ``text_dims``.
    """
    proj = getattr(tower, 'text_projection', None)
    if isinstance(proj, nn.Linear):
        return proj.out_features
    if isinstance(proj, nn.Parameter):
        return proj.shape[1]
    if proj is None and is_native_tower(tower):
        return tower.width
    return int(cfg['embed_dim'])


def get_tokenizer(model_name: str, context_length: int) -> Any:
    """open_clip's tokenizer for an architecture.

    CLIP-style architectures (ViT-*, RN*, convnext_*, QM-Tiny) use ``SimpleTokenizer``, whose BPE
    vocabulary ships inside the open_clip package (works offline). SigLIP / HF text towers need
    the ``transformers`` / ``sentencepiece`` packages and their tokenizer files.

    Args:
        model_name: Architecture name.
        context_length: Token sequence length (the tower's ``context_length``).

    Returns:
        A callable ``tokenizer(texts, context_length=None) -> LongTensor [N, context_length]``.
    """
    name = model_name.replace('/', '-') if ':' not in model_name else model_name
    return open_clip.get_tokenizer(name, context_length=context_length)


def tokenize(tokenizer: Any, texts: Sequence[str],
             context_length: int) -> Tuple[Tensor, Tensor]:
    """Tokenise texts and report which ones the context length truncated.

    Args:
        tokenizer: From :func:`get_tokenizer`.
        texts: N strings.
        context_length: Sequence length L.

    Returns:
        ``(ids, truncated)``: LongTensor ``[N, L]`` (the tokenizer's own truncation, which keeps
        the end-of-text token for ``SimpleTokenizer``) and BoolTensor ``[N]``.
    """
    ids = tokenizer(list(texts), context_length=context_length)
    pad_id = getattr(tokenizer, 'pad_token_id', None)
    pad_id = 0 if pad_id is None else int(pad_id)
    # A sequence can only have been cut if its last slot is used; re-tokenise those rows longer.
    full = (ids[:, -1] != pad_id).nonzero().flatten().tolist()
    truncated = torch.zeros(len(texts), dtype=torch.bool)
    if full:
        longer = tokenizer([texts[i] for i in full], context_length=4 * context_length)
        used = (longer != pad_id).sum(dim=1)
        truncated[full] = used > context_length
    return ids, truncated


def _torch_load(path: str) -> Any:
    """Load a torch file on CPU, safely first (``weights_only=True``).

    A full mmengine checkpoint also pickles its message hub and meta (non-tensor objects that
    ``weights_only`` refuses, ENVIRONMENT.md trap 3): for a local file named by the user the load
    is retried with ``weights_only=False`` and a warning. TorchScript archives (OpenAI's original
    CLIP files) go through ``torch.jit.load``.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError:
        warnings.warn(f'{path}: not loadable with weights_only=True (it holds non-tensor '
                      'objects, e.g. a full mmengine checkpoint); loading it with '
                      'weights_only=False: only do this with files you trust', UserWarning)
        return torch.load(path, map_location='cpu', weights_only=False)
    except RuntimeError as err:
        if 'TorchScript' not in str(err):
            raise
        return torch.jit.load(path, map_location='cpu').state_dict()


def read_state_dict(path: str) -> Dict[str, Tensor]:
    """Read the state dict held by a checkpoint file.

    Accepts an open_clip state dict (``.pt`` / ``.bin`` / ``.pth`` / ``.safetensors``), a
    TorchScript CLIP archive, or a checkpoint that wraps one under ``state_dict`` / ``model`` /
    ``module`` (mmengine, open_clip training runs). A ``module.`` (DDP) prefix is removed.

    Args:
        path: Local file.

    Returns:
        Flat mapping from parameter name to tensor.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: The file holds no state dict.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'pretrained: checkpoint file {path!r} does not exist')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        obj: Any = load_file(path, device='cpu')
    else:
        obj = _torch_load(path)
    if isinstance(obj, torch.jit.ScriptModule):
        obj = obj.state_dict()
    for key in ('state_dict', 'model', 'module'):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f'{path}: no state dict found (expected a mapping of tensors, or one '
                         "under 'state_dict' / 'model' / 'module')")
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def find_tower_prefix(state: Mapping[str, Tensor], tower_keys: Sequence[str],
                      path: str = '<state dict>') -> str:
    """Find the prefix under which a checkpoint stores the text tower.

    open_clip ``CLIP`` stores it at the top level (``token_embedding.weight``),
    ``CustomTextCLIP`` under ``text.``, and an mmengine checkpoint of a model holding this
    encoder under e.g. ``head.text_encoder.tower.``.

    Args:
        state: The checkpoint's flat state dict.
        tower_keys: The tower's own state-dict keys.
        path: File name for error messages.

    Returns:
        The prefix (possibly ``''``) that covers the most tower keys.

    Raises:
        KeyError: No prefix holds the tower's anchor key.
    """
    anchor = 'token_embedding.weight' if 'token_embedding.weight' in tower_keys else tower_keys[0]
    prefixes = {k[:-len(anchor)] for k in state if k.endswith(anchor)
                and (len(k) == len(anchor) or k[-len(anchor) - 1] == '.')}
    if not prefixes:
        raise KeyError(f'{path}: no text tower found (no key ending in {anchor!r}); is it an '
                       'open_clip checkpoint of the same architecture?')
    return max(sorted(prefixes), key=lambda p: sum(p + k in state for k in tower_keys))


def load_text_tower_weights(tower: nn.Module, path: str) -> None:
    """Load the text-tower part of a checkpoint file into ``tower`` (vision weights are ignored).

    Args:
        tower: From :func:`build_text_tower`.
        path: Local checkpoint file (see :func:`read_state_dict`).

    Raises:
        KeyError: Tower weights missing from the file (the error names file and keys).
        ValueError: A tensor's shape differs from the architecture's (names file and key).
    """
    state = read_state_dict(path)
    own = tower.state_dict()
    prefix = find_tower_prefix(state, list(own), path)
    missing = [k for k in own if prefix + k not in state]
    if missing:
        raise KeyError(f'{path}: text tower weights missing under prefix {prefix!r}: '
                       f'{missing[:5]}{" ..." if len(missing) > 5 else ""}')
    picked = {}
    for key, value in own.items():
        loaded = state[prefix + key]
        if loaded.shape != value.shape:
            raise ValueError(f'{path}: {prefix + key} has shape {tuple(loaded.shape)}, the '
                             f'architecture expects {tuple(value.shape)}')
        picked[key] = loaded
    tower.load_state_dict(picked, strict=True)


def resolve_pretrained(model_name: str, pretrained: str, cache_dir: Optional[str] = None) -> str:
    """Turn ``pretrained`` into a local checkpoint file.

    Args:
        model_name: Architecture name (to look the tag up).
        pretrained: A local file, or an open_clip pretrained tag for ``model_name``
            (``open_clip.list_pretrained_tags_by_model(model_name)``, e.g. ``'laion2b_s34b_b88k'``
            for ViT-B-16), which is downloaded (HF hub or URL) into ``cache_dir`` on first use.
        cache_dir: Download cache (open_clip's default when None).

    Returns:
        Path of the checkpoint file.

    Raises:
        FileNotFoundError: Neither a file nor a known tag.
    """
    if osp.isfile(pretrained):
        return pretrained
    name = model_name.replace('/', '-')
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        raise FileNotFoundError(
            f'pretrained: {pretrained!r} is neither a file nor an open_clip tag of {name!r} '
            f'(tags: {open_clip.list_pretrained_tags_by_model(name)})')
    path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    if not path or not osp.isfile(path):
        raise FileNotFoundError(f'pretrained: download of tag {pretrained!r} for {name!r} failed')
    return path
