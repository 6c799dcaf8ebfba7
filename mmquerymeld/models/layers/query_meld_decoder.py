"""Query meld decoder: self-attn, dual-query cross-attn, deformable cross-attn, FFN (paper 3.2)."""
import copy
from typing import List, Optional, Sequence, Tuple

import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmdet.models.layers.transformer.deformable_detr_layers import \
    DeformableDetrTransformerDecoderLayer
from mmdet.models.layers.transformer.utils import MLP, coordinate_to_encoding, inverse_sigmoid
from mmdet.registry import MODELS
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

from .fp32_deform_attn import build_fp32_deform_attn

DUAL_ATTN_MODES = ('bidirectional', 'learnable_to_conditional', 'conditional_to_learnable', 'none')


@MODELS.register_module()
class DualQueryCrossAttention(BaseModule):
    """Dual-query cross-attention between the learnable and the conditional query sets (paper 3.2).

    The paper says only that the two sets "interact with each other through a deep fusion mechanism
    via dual-query cross-attention", with learnable queries carrying global structure and
    conditional queries refining it locally (Figure 3 (c)). Our reading, the default
    ``mode='bidirectional'``: both sets are updated *in parallel* from the same input, each by a
    multi-head cross-attention whose queries are its own members and whose keys/values are the
    members of the other set (positional embeddings from the anchor boxes added to queries and
    keys), followed by a residual connection and LayerNorm::

        L' = LN(L + MHA(q=L + pos_L, k=C + pos_C, v=C))
        C' = LN(C + MHA(q=C + pos_C, k=L + pos_L, v=L))

    Unlike the preceding self-attention over all queries, attention here is *only across types*,
    so every query is forced to gather information from the other set on top of whatever
    self-attention already mixed. Denoising queries are left untouched (they must not see the
    matching queries). When one set is empty (the learnable-only / conditional-only strategies of
    Table 2) the module is the identity, and the decoder layer reduces to Mask DINO's.

    Alternatives, selected by ``mode``:

    - ``'learnable_to_conditional'``: only learnable queries are updated (they read the conditional
      set), conditional queries pass through.
    - ``'conditional_to_learnable'``: only conditional queries are updated, reading the global
      context of the learnable set ("conditional queries refine these global features").
    - ``'none'``: no dual attention; the sets interact only through self-attention (ablation).

    ``share_weights=False`` gives each direction its own attention weights.

    Args:
        embed_dims: C.
        num_heads: Attention heads.
        dropout: Attention dropout.
        mode: One of ``DUAL_ATTN_MODES``.
        share_weights: One attention module for both directions (bidirectional mode only).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, dropout: float = 0.0,
                 mode: str = 'bidirectional', share_weights: bool = True, init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if mode not in DUAL_ATTN_MODES:
            raise ValueError(f'DualQueryCrossAttention: mode={mode!r}, expected one of '
                             f'{DUAL_ATTN_MODES}')
        self.mode = mode
        self.embed_dims = embed_dims
        if mode == 'none':
            return

        def attn() -> MultiheadAttention:
            return MultiheadAttention(embed_dims=embed_dims, num_heads=num_heads,
                                      attn_drop=dropout, batch_first=True)

        if mode in ('bidirectional', 'learnable_to_conditional'):
            self.learn_attn = attn()
        if mode in ('bidirectional', 'conditional_to_learnable'):
            self.cond_attn = self.learn_attn if (mode == 'bidirectional'
                                                 and share_weights) else attn()
        self.norm = nn.LayerNorm(embed_dims)

    def forward(self, query: Tensor, query_pos: Tensor, num_dn: int, num_learnable: int,
                num_conditional: int) -> Tensor:
        """Mix the two matching query sets.

        Args:
            query: ``[B, P + Nl + Nc, C]`` ordered (denoising, learnable, conditional).
            query_pos: Same shape, positional embeddings of the anchors.
            num_dn: P. num_learnable: Nl. num_conditional: Nc.

        Returns:
            Tensor: same shape as ``query``.
        """
        if self.mode == 'none' or num_learnable == 0 or num_conditional == 0:
            return query
        if query.shape[1] != num_dn + num_learnable + num_conditional:
            raise ValueError('DualQueryCrossAttention: query length does not match '
                             f'{num_dn}+{num_learnable}+{num_conditional}')
        dn, learn, cond = query.split([num_dn, num_learnable, num_conditional], 1)
        _, p_learn, p_cond = query_pos.split([num_dn, num_learnable, num_conditional], 1)
        new_learn, new_cond = learn, cond
        if self.mode in ('bidirectional', 'learnable_to_conditional'):
            new_learn = self.norm(self.learn_attn(query=learn, key=cond, value=cond,
                                                  query_pos=p_learn, key_pos=p_cond))
        if self.mode in ('bidirectional', 'conditional_to_learnable'):
            new_cond = self.norm(self.cond_attn(query=cond, key=learn, value=learn,
                                                query_pos=p_cond, key_pos=p_learn))
        return torch.cat([dn, new_learn, new_cond], 1)


class QueryMeldDecoderLayer(DeformableDetrTransformerDecoderLayer):
    """One query meld layer (paper 3.2, Figure 3 (c)), built on mmdet's Deformable DETR layer.

    Order: self-attention over all queries (with the denoising mask) -> dual-query
    cross-attention (:class:`DualQueryCrossAttention`) -> multi-scale deformable cross-attention to
    the encoder memory around each query's anchor box -> FFN; post-norm, as in Mask DINO.

    Args:
        dual_attn_cfg: kwargs of :class:`DualQueryCrossAttention` (``embed_dims`` filled in).
        **kwargs: ``self_attn_cfg``, ``cross_attn_cfg`` (mmcv ``MultiScaleDeformableAttention``),
            ``ffn_cfg``, ``norm_cfg`` of :class:`DetrTransformerDecoderLayer`.
    """

    def __init__(self, dual_attn_cfg: Optional[dict] = None, **kwargs) -> None:
        self.dual_attn_cfg = copy.deepcopy(dual_attn_cfg) if dual_attn_cfg else {}
        super().__init__(**kwargs)

    def _init_layers(self) -> None:
        """Build mmdet's self-attn / deformable cross-attn / FFN / norms plus the dual attention."""
        super()._init_layers()
        self.cross_attn = build_fp32_deform_attn(self.cross_attn_cfg)  # fp32 under autocast
        cfg = dict(self.dual_attn_cfg)
        cfg.setdefault('embed_dims', self.embed_dims)
        cfg.setdefault('num_heads', self.self_attn.num_heads)
        self.dual_attn = DualQueryCrossAttention(**cfg)

    def forward(self, query: Tensor, query_pos: Tensor, value: Tensor, reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                self_attn_mask: Optional[Tensor] = None, num_dn: int = 0,
                num_learnable: int = 0, num_conditional: int = 0,
                key_padding_mask: Optional[Tensor] = None, **kwargs) -> Tensor:
        """Run the layer.

        Args:
            query: ``[B, N, C]`` content queries (denoising, learnable, conditional).
            query_pos: ``[B, N, C]`` positional queries from the anchors.
            value: ``[B, S, C]`` encoder memory.
            reference_points: ``[B, N, L, 4]`` normalised cxcywh anchors per level.
            spatial_shapes: ``[L, 2]``. level_start_index: ``[L]``.
            self_attn_mask: ``[N, N]`` bool, True = blocked.
            num_dn, num_learnable, num_conditional: sizes of the three parts of ``query``.
            key_padding_mask: ``[B, S]`` bool or None.

        Returns:
            Tensor: ``[B, N, C]``.
        """
        query = self.self_attn(query=query, key=query, value=query, query_pos=query_pos,
                               key_pos=query_pos, attn_mask=self_attn_mask)
        query = self.norms[0](query)
        query = self.dual_attn(query, query_pos, num_dn, num_learnable, num_conditional)
        query = self.cross_attn(query=query, value=value, query_pos=query_pos,
                                key_padding_mask=key_padding_mask,
                                reference_points=reference_points,
                                spatial_shapes=spatial_shapes,
                                level_start_index=level_start_index)
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


@MODELS.register_module()
class QueryMeldDecoder(BaseModule):
    """Stack of :class:`QueryMeldDecoderLayer` with iterative box refinement (DINO / Mask DINO).

    Before each layer the current anchors (normalised cxcywh) give the positional queries through a
    sine embedding and an MLP (DAB-DETR); after each layer the normalised output refines the
    anchors:
    ``box = sigmoid(box_head_l(h) + inverse_sigmoid(anchor))``, detached before the next layer.

    Args:
        num_layers: Number of layers.
        layer_cfg: kwargs of :class:`QueryMeldDecoderLayer`.
    """

    def __init__(self, num_layers: int = 9, layer_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_layers < 1:
            raise ValueError(f'QueryMeldDecoder: num_layers must be >= 1, got {num_layers}')
        layer_cfg = layer_cfg or {}
        self.layers = ModuleList(
            [QueryMeldDecoderLayer(**copy.deepcopy(layer_cfg)) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.embed_dims = self.layers[0].embed_dims
        self.num_levels = self.layers[0].cross_attn.num_levels
        self.ref_point_head = MLP(self.embed_dims * 2, self.embed_dims, self.embed_dims, 2)
        self.norm = nn.LayerNorm(self.embed_dims)

    def init_weights(self) -> None:
        """Xavier for attention/FFN matrices, mmcv's own init for the deformable attention."""
        super().init_weights()
        for layer in self.layers:
            for name, p in layer.named_parameters():
                if p.dim() > 1 and 'cross_attn' not in name:
                    nn.init.xavier_uniform_(p)
            layer.cross_attn.init_weights()

    def forward(self, query: Tensor, anchors: Tensor, value: Tensor, spatial_shapes: Tensor,
                level_start_index: Tensor, box_heads: Sequence[nn.Module],
                self_attn_mask: Optional[Tensor] = None, num_dn: int = 0,
                num_learnable: int = 0, num_conditional: int = 0,
                key_padding_mask: Optional[Tensor] = None) -> Tuple[List[Tensor], List[Tensor]]:
        """Decode.

        Args:
            query: ``[B, N, C]`` initial content queries.
            anchors: ``[B, N, 4]`` initial normalised cxcywh anchors (sigmoid applied; gradients
                flow into them, e.g. into the learnable anchors).
            value: ``[B, S, C]`` memory. spatial_shapes: ``[L, 2]``. level_start_index: ``[L]``.
            box_heads: One box-delta module per layer (may be the same module).
            self_attn_mask, num_dn, num_learnable, num_conditional, key_padding_mask: see
                :meth:`QueryMeldDecoderLayer.forward`.

        Returns:
            tuple: ``hidden`` list of ``num_layers`` normalised states ``[B, N, C]``, and ``boxes``
            list of ``num_layers`` refined boxes ``[B, N, 4]`` (normalised cxcywh).
        """
        if len(box_heads) != self.num_layers:
            raise ValueError(f'QueryMeldDecoder: {len(box_heads)} box heads for '
                             f'{self.num_layers} layers')
        if spatial_shapes.shape[0] != self.num_levels:
            raise ValueError(f'QueryMeldDecoder: memory has {spatial_shapes.shape[0]} levels but '
                             f'the deformable attention expects {self.num_levels}')
        hidden, boxes = [], []
        reference = anchors
        for layer, box_head in zip(self.layers, box_heads):
            ref_input = reference[:, :, None].expand(-1, -1, self.num_levels, -1)
            query_pos = self.ref_point_head(
                coordinate_to_encoding(reference, num_feats=self.embed_dims // 2))
            query = layer(query, query_pos=query_pos, value=value, reference_points=ref_input,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          self_attn_mask=self_attn_mask, num_dn=num_dn,
                          num_learnable=num_learnable, num_conditional=num_conditional,
                          key_padding_mask=key_padding_mask)
            normed = self.norm(query)
            new_box = (box_head(normed) + inverse_sigmoid(reference, eps=1e-3)).sigmoid()
            hidden.append(normed)
            boxes.append(new_box)
            reference = new_box.detach()
        return hidden, boxes


