"""The open-vocabulary classifier: decoder queries scored against text embeddings.

Paper section 3.3: a query's class logit is the similarity of its class embedding with the text
embedding, trained with the focal loss. LMSeg section 3.3: a linear adapter between the query and
text spaces and a temperature. The texts are embedded by
:class:`~.text_encoder.OpenCLIPTextEncoder`.
"""
import math
from typing import List, Optional, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmdet.registry import MODELS
from .legacy import ENCODER_ARGS


@MODELS.register_module()
class QueryTextClassifier(BaseModule):
    """``logits[b, q, k] = s * cos(W f_bq, t_bk) + b``, padded texts masked.

    Decoder queries ``f_bq`` are projected to the text space by a linear layer ``W`` and
    normalised; ``t_bk`` are text embeddings; ``s`` is a learnable logit scale (``exp`` of a
    parameter, CLIP / LMSeg temperature ``1 / 0.07``) and ``b`` a learnable bias initialised so
    that ``sigmoid(b) = prior_prob`` (the focal-loss prior of RetinaNet). Classification is
    per-text sigmoid: there is no background embedding.

    Args:
        query_dims: Decoder hidden size C (input of the projection).
        text_dims: Text embedding size D (``OpenCLIPTextEncoder.text_dims``).
        prior_prob: Initial sigmoid probability of every (query, text) pair.
        init_logit_scale: Initial logit scale ``s`` (not its log).
        max_logit_scale: Upper clamp of ``s`` (CLIP uses 100).
        learnable_logit_scale: Learn ``s``; otherwise it stays ``init_logit_scale``.
        normalize_queries: Cosine similarity (True) or raw dot product of the projected queries.
        padding_logit: Logit given to padded texts (large negative but finite: focal loss stays
            finite, fp16 can hold it).
        init_cfg: mmengine init config.

    Raises:
        TypeError: An unknown argument; for a text-encoder argument of the former
            ``OpenCLIPTextClassifier`` (``model_name``, ``pretrained`` ...), the error says to set
            it under ``text_encoder`` instead.
    """

    def __init__(self,
                 query_dims: int = 256,
                 text_dims: int = 512,
                 prior_prob: float = 0.01,
                 init_logit_scale: float = 1 / 0.07,
                 max_logit_scale: float = 100.0,
                 learnable_logit_scale: bool = True,
                 normalize_queries: bool = True,
                 padding_logit: float = -1e4,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 **unknown) -> None:
        if unknown:
            moved = {k: ENCODER_ARGS[k] for k in unknown if k in ENCODER_ARGS}
            hint = (f'; since the text side was split these belong to the text encoder: set '
                    + ', '.join(f'text_encoder.{v}' for v in moved.values())
                    + ' instead of ' + ', '.join(f'text_classifier.{k}' for k in moved)
                    if moved else '')
            raise TypeError(f'QueryTextClassifier: unexpected arguments {sorted(unknown)}{hint}')
        super().__init__(init_cfg=init_cfg)
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f'prior_prob must be in (0, 1), got {prior_prob}')
        if not 0.0 < init_logit_scale <= max_logit_scale:
            raise ValueError(f'init_logit_scale must be in (0, max_logit_scale={max_logit_scale}]'
                             f', got {init_logit_scale}')
        self.query_dims = query_dims
        self.text_dims = text_dims
        self.prior_prob = prior_prob
        self.max_logit_scale = max_logit_scale
        self.normalize_queries = normalize_queries
        self.padding_logit = padding_logit
        self.query_proj = nn.Linear(query_dims, text_dims)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_logit_scale)),
                                        requires_grad=learnable_logit_scale)
        self.logit_bias = nn.Parameter(torch.tensor(-math.log((1 - prior_prob) / prior_prob)))

    def forward(self, query_feats: Tensor, text_embeds: Tensor,
                text_valid: Optional[Tensor] = None) -> Tensor:
        """Classify queries against texts.

        Args:
            query_feats: ``[B, Q, query_dims]`` decoder query features.
            text_embeds: ``[B, K, text_dims]`` per-sample or ``[K, text_dims]`` shared text
                embeddings (unit norm from the text encoder; renormalised here).
            text_valid: ``[B, K]`` bool, False for padding texts; None when all are valid.

        Returns:
            ``[B, Q, K]`` logits; padded texts get ``padding_logit``.
        """
        if query_feats.dim() != 3 or query_feats.shape[-1] != self.query_dims:
            raise ValueError(f'query_feats: expected [B, Q, {self.query_dims}], got '
                             f'{tuple(query_feats.shape)}')
        if text_embeds.shape[-1] != self.text_dims or text_embeds.dim() not in (2, 3):
            raise ValueError(f'text_embeds: expected [B, K, {self.text_dims}] or '
                             f'[K, {self.text_dims}], got {tuple(text_embeds.shape)}')
        queries = self.query_proj(query_feats)  # [B, Q, D]
        if self.normalize_queries:
            queries = F.normalize(queries, dim=-1)
        texts = F.normalize(text_embeds, dim=-1).to(queries.dtype)
        if texts.dim() == 2:
            logits = torch.einsum('bqd,kd->bqk', queries, texts)
        else:
            if texts.shape[0] != queries.shape[0]:
                raise ValueError(f'text_embeds: batch {texts.shape[0]} != query batch '
                                 f'{queries.shape[0]}')
            logits = torch.einsum('bqd,bkd->bqk', queries, texts)
        scale = self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()
        logits = logits * scale + self.logit_bias
        if text_valid is not None:
            expected = (logits.shape[0], logits.shape[2])
            if tuple(text_valid.shape) != expected:
                raise ValueError(f'text_valid: expected shape {list(expected)}, got '
                                 f'{list(text_valid.shape)}')
            logits = logits.masked_fill(~text_valid.bool().unsqueeze(1), self.padding_logit)
        return logits

    @torch.no_grad()
    def max_logits(self, query_feats: Tensor, text_embeds: Tensor,
                   text_valid: Optional[Tensor] = None, max_elements: int = 2**24) -> Tensor:
        """Each query's best logit over the valid texts (no gradient: it ranks proposals).

        Equal to ``forward(...)`` masked to the valid texts and maxed over them, at half the
        cost and without the ``[B, Q, K]`` logits: ``W f + w0`` against a text ``t`` is
        ``f . (W^T t) + w0 . t``, so the texts are taken to the query space once (C instead of
        D multiply-adds per pair), and with cosine similarity the query's norm
        ``|W f + w0|`` divides the maximum, not each logit. Queries go in chunks of at most
        ``max_elements`` pair scores over the batch; only the valid texts enter.

        Args:
            query_feats: ``[B, Q, query_dims]``.
            text_embeds: ``[B, K, text_dims]`` or shared ``[K, text_dims]``.
            text_valid: ``[B, K]`` bool; None when all are valid.
            max_elements: Largest chunk of pair scores (elements).

        Returns:
            ``[B, Q]``; ``-inf`` for a sample without any valid text.
        """
        b, q, _ = query_feats.shape
        texts = F.normalize(text_embeds, dim=-1).to(query_feats.dtype)
        if texts.dim() == 2:
            texts = texts.expand(b, -1, -1)
        scale = self.logit_scale.clamp(max=math.log(self.max_logit_scale)).exp()
        weight = self.query_proj.weight.to(query_feats.dtype)  # [D, C]
        bias = self.query_proj.bias.to(query_feats.dtype)  # [D]
        out = query_feats.new_full((b, q), float('-inf'))
        projected = []  # per sample: its valid texts in the query space, or None
        for i in range(b):  # the batch, a handful of images
            kept = texts[i] if text_valid is None else texts[i][text_valid[i].bool()]
            projected.append((kept @ weight, kept @ bias) if kept.shape[0] else None)
        rows = max(1, max_elements // max(1, b * texts.shape[1]))
        for start in range(0, q, rows):
            chunk = query_feats[:, start:start + rows]  # [B, rows, C]
            for i, texts_i in enumerate(projected):
                if texts_i is None:
                    continue
                in_query_space, offset = texts_i  # [K_i, C], [K_i]
                best = torch.addmm(offset, chunk[i], in_query_space.t()).amax(-1)
                if self.normalize_queries:  # F.normalize's denominator
                    best = best / self.query_proj(chunk[i]).norm(dim=-1).clamp_min(1e-12)
                out[i, start:start + rows] = best * scale + self.logit_bias
        return out
