"""The one text-tower forward the package writes itself: CoOp context vectors between tokens.

open_clip's public ``TextTransformer.forward(ids)`` embeds the token ids itself, so learnable
context vectors (CoOp, Zhou et al. 2022; LMSeg section 3.2: ``"[v]_1 ... [v]_L name."``) cannot be
slipped in between the start token and the class name's tokens through it. :func:`encode_text_tokens`
mirrors that forward for open_clip's own towers (no class token, causal or bidirectional
attention without a pad mask) and adds the context insertion and, under a causal mask, the
removal of trailing padding columns (the pooled token never attends to them: same features, less
compute). Every other tower goes through its own ``forward``.
"""
from typing import Optional

import torch
from open_clip.transformer import text_global_pool
from torch import Tensor, nn


def supports_token_forward(tower: nn.Module) -> bool:
    """Whether :func:`encode_text_tokens` reproduces ``tower``'s forward.

    Args:
        tower: A text tower from :func:`~.open_clip_utils.build_text_tower`.

    Returns:
        True for an open_clip ``TextTransformer`` without a class token (CoCa) or a pad mask;
        False for HuggingFace text encoders and those variants.
    """
    native = all(hasattr(tower, a) for a in ('token_embedding', 'positional_embedding',
                                              'transformer', 'ln_final'))
    return (native and getattr(tower, 'cls_emb', None) is None
            and not getattr(tower, 'use_pad_mask', False))


def can_trim_padding(tower: nn.Module) -> bool:
    """Whether trailing padding columns may be cut before ``tower`` runs (exact result).

    Under a causal mask with pooling at or before the end token, the pooled token never attends
    to the padding after it.

    Args:
        tower: A tower for which :func:`supports_token_forward` holds.

    Returns:
        True when cutting trailing padding leaves the pooled features unchanged.
    """
    return (supports_token_forward(tower) and tower.attn_mask is not None
            and tower.pool_type in ('argmax', 'eos', 'first'))


def encode_text_tokens(tower: nn.Module, ids: Tensor, context: Optional[Tensor] = None,
                       pad_id: Optional[int] = None) -> Tensor:
    """``tower(ids)`` with optional CoOp context vectors and padding trimming.

    Mirrors ``open_clip.transformer.TextTransformer.forward`` of open_clip_torch 3.3.0 (token
    embedding, positional embedding, transformer, ``ln_final``, ``text_global_pool``, text
    projection) for towers where :func:`supports_token_forward` holds. With ``context=None`` and
    ``pad_id=None`` the output equals ``tower(ids)``.

    Args:
        tower: open_clip ``TextTransformer``.
        ids: ``[N, L]`` token ids on the tower's device.
        context: ``[n_ctx, width]`` vectors that replace the embeddings of token slots
            ``1 .. n_ctx`` (the placeholder words right after the start token), or None.
        pad_id: Padding token id: trailing columns that are padding in every row are cut first
            (only pass it when :func:`can_trim_padding` holds); None keeps all L columns.

    Returns:
        ``[N, output_dim]`` unnormalised text features (``[N, width]`` without projection).
    """
    if pad_id is not None:
        used = (ids != pad_id).any(dim=0).nonzero()
        ids = ids[:, :int(used.max()) + 1] if used.numel() else ids[:, :1]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(ids).to(cast_dtype)  # [N, L, width]
    if context is not None:
        n_ctx = context.shape[0]
        ctx = context.to(cast_dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, :1], ctx, x[:, 1 + n_ctx:]], dim=1)
    seq_len = x.shape[1]
    attn_mask = tower.attn_mask
    if attn_mask is not None:
        attn_mask = attn_mask[:seq_len, :seq_len]
    x = x + tower.positional_embedding[:seq_len].to(cast_dtype)
    x = tower.transformer(x, attn_mask=attn_mask)
    x = tower.ln_final(x)
    pooled = text_global_pool(x, ids, tower.pool_type, eos_token_id=tower.eos_id)
    proj = tower.text_projection
    if proj is None:
        return pooled
    return proj(pooled) if isinstance(proj, nn.Linear) else pooled @ proj


#: Placeholder word whose token slots the CoOp context vectors replace.
CTX_PLACEHOLDER = 'x'


def context_prefix(num_context_tokens: int) -> str:
    """The placeholder words ``"x x ... x"`` whose token slots the context vectors replace."""
    return ' '.join([CTX_PLACEHOLDER] * num_context_tokens)


def check_context_support(model_name: str, own_forward: bool, tokenizer,
                          num_context_tokens: int, context_length: int) -> None:
    """Context vectors need open_clip's own text tower and a SOT-first BPE tokenizer.

    Raises:
        ValueError: The tower / tokenizer cannot take context vectors, or they leave no room.
    """
    if not own_forward or not hasattr(tokenizer, 'sot_token_id'):
        raise ValueError(f'num_context_tokens: learnable context needs an open_clip '
                         f'TextTransformer with a CLIP tokenizer; {model_name!r} has a '
                         f'{type(tokenizer).__name__} tokenizer or a tower of another kind')
    ids = tokenizer([context_prefix(num_context_tokens) + ' cat'], context_length=context_length)
    slots = ids[0, 1:num_context_tokens + 1]
    if ids[0, 0] != tokenizer.sot_token_id or slots.unique().numel() != 1:
        raise ValueError('num_context_tokens: the tokenizer does not map the context '
                         f'placeholder {CTX_PLACEHOLDER!r} to one token per slot')
    if num_context_tokens + 3 > context_length:
        raise ValueError(f'num_context_tokens={num_context_tokens} leaves no room in '
                         f'context_length={context_length}')
