"""Query meld decoder: self-attn, dual-query cross-attn, deformable cross-attn, FFN (paper 3.2)."""
import copy
from typing import Callable, Optional, Sequence, Tuple

import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmdet.models.layers.transformer.deformable_detr_layers import \
    DeformableDetrTransformerDecoderLayer
from mmdet.models.layers.transformer.dino_layers import DinoTransformerDecoder
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
    self-attention already mixed. Denoising queries are left untouched by default;
    ``dn_as_conditional=True`` passes them through the conditional direction (they read the
    learnable set, as conditional queries do: both carry boxes from outside the decoder), so the
    later sublayers see denoising and matching states that went through the same step. Matching
    queries never read denoising ones either way (no ground truth leaks; DN-DETR lets denoising
    queries see matching ones). When one set is empty (the learnable-only / conditional-only
    strategies of Table 2) the module is the identity, and the decoder layer reduces to Mask
    DINO's.

    Alternatives, selected by ``mode``:

    - ``'learnable_to_conditional'``: only learnable queries are updated (they read the conditional
      set), conditional queries pass through.
    - ``'conditional_to_learnable'``: only conditional queries are updated, reading the global
      context of the learnable set ("conditional queries refine these global features").
    - ``'none'``: no dual attention; the sets interact only through self-attention (ablation).

    Each direction has its own attention weights by default (the paper does not say; the query
    study measured one shared module 2.4 +- 1.4 instance mask AP below one per direction over 3
    seeds, issue 11); ``share_weights=True`` uses one module for both. One LayerNorm serves both
    directions by default (the form above); ``separate_norms=True`` gives the conditional
    direction its own (``cond_norm``), so each set's post-attention statistics are normalised
    with their own affine parameters (a study ablation, issue 11).

    Args:
        embed_dims: C.
        num_heads: Attention heads.
        dropout: Attention dropout.
        mode: One of ``DUAL_ATTN_MODES``.
        share_weights: One attention module for both directions (bidirectional mode only).
        dn_as_conditional: Denoising queries take the conditional direction (see above).
        separate_norms: The conditional direction's own LayerNorm (bidirectional mode only).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, dropout: float = 0.0,
                 mode: str = 'bidirectional', share_weights: bool = False,
                 dn_as_conditional: bool = False, separate_norms: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        if mode not in DUAL_ATTN_MODES:
            raise ValueError(f'DualQueryCrossAttention: mode={mode!r}, expected one of '
                             f'{DUAL_ATTN_MODES}')
        self.mode = mode
        self.dn_as_conditional = dn_as_conditional
        self.embed_dims = embed_dims
        self.separate_norms = mode == 'bidirectional' and separate_norms
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
        # not an alias when shared: the state dict keeps the former keys (saved checkpoints load)
        if self.separate_norms:
            self.cond_norm = nn.LayerNorm(embed_dims)

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
        p_dn, p_learn, p_cond = query_pos.split([num_dn, num_learnable, num_conditional], 1)
        new_learn = learn
        if self.mode in ('bidirectional', 'learnable_to_conditional'):
            new_learn = self.norm(self.learn_attn(query=learn, key=cond, value=cond,
                                                  query_pos=p_learn, key_pos=p_cond))
        # who reads the learnable set: [denoising | conditional], or the conditional set only
        num_dn_readers = num_dn if self.dn_as_conditional else 0
        kept_dn, dn_readers = dn.split([num_dn - num_dn_readers, num_dn_readers], 1)
        readers = torch.cat([dn_readers, cond], 1)
        if self.mode in ('bidirectional', 'conditional_to_learnable'):
            reader_pos = torch.cat([p_dn[:, num_dn - num_dn_readers:], p_cond], 1)
            cond_norm = self.cond_norm if self.separate_norms else self.norm
            readers = cond_norm(self.cond_attn(query=readers, key=learn, value=learn,
                                               query_pos=reader_pos, key_pos=p_learn))
        new_dn, new_cond = readers.split([num_dn_readers, num_conditional], 1)
        return torch.cat([kept_dn, new_dn, new_learn, new_cond], 1)


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
class QueryMeldDecoder(DinoTransformerDecoder):
    """mmdet's DINO decoder with :class:`QueryMeldDecoderLayer` layers (DINO / Mask DINO).

    Constructor, attributes (``layers``, ``ref_point_head``, ``norm``) and the ``forward``
    contract are those of mmdet's :class:`DinoTransformerDecoder`: before each layer the current
    reference box (normalised cxcywh) gives the positional queries through a sine embedding and
    the ``ref_point_head`` MLP (DAB-DETR); after it, the layer's ``reg_branches`` delta refines
    the box, ``sigmoid(delta + inverse_sigmoid(reference))``. Look-forward-twice (DINO 3.5):
    the refined box is returned *undetached* as the next layer's reference, so the box loss of
    layer ``l + 1`` (predicted on top of it) also trains layer ``l``'s refinement, while the
    copy fed into the next layer's attention and positional queries is detached.

    ``forward`` differs from mmdet's loop in three ways (why it is overridden):

    - the sine embedding has ``embed_dims // 2`` features per coordinate (mmdet hard-codes 128,
      i.e. ``embed_dims=256``; the tiny model has 64);
    - the deltas are predicted from the *normalised* layer output, the same state the head's
      ``forward_predictions`` predicts from (mmdet refines from the un-normalised one, so its
      next reference and its layer prediction differ);
    - ``valid_ratios`` may be None: references already in the padded frame (QueryMeldNet's
      convention) are used as they are.

    Args:
        num_layers: Number of layers.
        layer_cfg: kwargs of :class:`QueryMeldDecoderLayer`.
        post_norm_cfg: Must be None (the decoder's ``norm`` normalises every layer's output).
        return_intermediate: Must be True (every layer is supervised).
    """

    def __init__(self, num_layers: int = 9, layer_cfg: Optional[dict] = None,
                 post_norm_cfg: Optional[dict] = None, return_intermediate: bool = True,
                 init_cfg=None) -> None:
        if num_layers < 1:
            raise ValueError(f'QueryMeldDecoder: num_layers must be >= 1, got {num_layers}')
        if not return_intermediate:
            raise ValueError('QueryMeldDecoder: return_intermediate must be True (every layer '
                             'is supervised)')
        super().__init__(num_layers=num_layers, layer_cfg=dict(layer_cfg or {}),
                         post_norm_cfg=post_norm_cfg, return_intermediate=True,
                         init_cfg=init_cfg)

    def _init_layers(self) -> None:
        """Our layers; then DINO's ``ref_point_head`` and ``norm`` (same order, same keys)."""
        if self.post_norm_cfg is not None:
            raise ValueError('QueryMeldDecoder: post_norm_cfg must be None (the decoder\'s '
                             '`norm` already normalises every layer output)')
        self.layers = ModuleList([
            QueryMeldDecoderLayer(**copy.deepcopy(self.layer_cfg))
            for _ in range(self.num_layers)
        ])
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

    def forward(self, query: Tensor, value: Tensor, key_padding_mask: Optional[Tensor],
                self_attn_mask: Optional[Tensor], reference_points: Tensor,
                spatial_shapes: Tensor, level_start_index: Tensor,
                valid_ratios: Optional[Tensor], reg_branches: Sequence[Callable[[Tensor], Tensor]],
                **kwargs) -> Tuple[Tensor, Tensor]:
        """Decode with look-forward-twice box refinement.

        Args:
            query: ``[B, N, C]`` initial content queries.
            value: ``[B, S, C]`` encoder memory.
            key_padding_mask: ``[B, S]`` bool or None.
            self_attn_mask: ``[N, N]`` bool (True = blocked) or None.
            reference_points: ``[B, N, 4]`` initial normalised cxcywh anchors (sigmoid applied;
                gradients flow into them, e.g. into the learnable anchors).
            spatial_shapes: ``[L, 2]``. level_start_index: ``[L]``.
            valid_ratios: ``[B, L, 2]`` or None (references already in the padded frame).
            reg_branches: One box-delta module per layer (may be the same module), ``[B, N, C]
                -> [B, N, 4]`` on the normalised layer output.
            **kwargs: Passed to every layer (``num_dn``, ``num_learnable``,
                ``num_conditional`` of :meth:`QueryMeldDecoderLayer.forward`).

        Returns:
            tuple: ``hidden_states`` ``[num_layers, B, N, C]`` (normalised layer outputs) and
            ``references`` ``[num_layers + 1, B, N, 4]``: the initial anchors, then each layer's
            refined box, undetached (look-forward-twice).
        """
        if len(reg_branches) != self.num_layers:
            raise ValueError(f'QueryMeldDecoder: {len(reg_branches)} box heads (reg_branches) '
                             f'for {self.num_layers} layers')
        if spatial_shapes.shape[0] != self.num_levels:
            raise ValueError(f'QueryMeldDecoder: memory has {spatial_shapes.shape[0]} levels but '
                             f'the deformable attention expects {self.num_levels}')
        hidden, references = [], [reference_points]
        reference = reference_points
        for layer, reg_branch in zip(self.layers, reg_branches):
            if valid_ratios is None:
                ref_input = reference[:, :, None].expand(-1, -1, self.num_levels, -1)
            else:
                ref_input = reference[:, :, None] * valid_ratios.repeat(1, 1, 2)[:, None]
            query_pos = self.ref_point_head(
                coordinate_to_encoding(ref_input[:, :, 0], num_feats=self.embed_dims // 2))
            query = layer(query, query_pos=query_pos, value=value, reference_points=ref_input,
                          spatial_shapes=spatial_shapes, level_start_index=level_start_index,
                          self_attn_mask=self_attn_mask, key_padding_mask=key_padding_mask,
                          valid_ratios=valid_ratios, **kwargs)
            normed = self.norm(query)
            refined = (reg_branch(normed) + inverse_sigmoid(reference, eps=1e-3)).sigmoid()
            hidden.append(normed)
            references.append(refined)  # undetached: layer l+1's box builds on it (DINO 3.5)
            reference = refined.detach()  # the next layer attends around a detached box
        return torch.stack(hidden), torch.stack(references)
