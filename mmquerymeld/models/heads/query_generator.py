"""The matching queries of QueryMeldNet: learnable and conditional (paper 3.2, Figure 3 (a)-(c))."""
from typing import Callable, NamedTuple, Optional

import torch
from mmdet.registry import MODELS
from mmdet.utils import OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmquerymeld.utils import QUERY_TYPES
from ..layers.query_selection import ConditionalQueryGenerator, masks_to_anchor_logits

# how the learnable anchors start: DAB-DETR's random centres with a quarter-image size, or the
# whole image (the anchor-free, global view of Mask2Former's learnable queries)
LEARNABLE_ANCHOR_INITS = ('random', 'image')


class MatchingQueries(NamedTuple):
    """Initial matching queries of a batch, ordered ``[learnable | conditional]``.

    Attributes:
        content: ``[B, Q, C]`` content queries (the conditional part detached).
        anchors: ``[B, Q, 4]`` unsigmoided cxcywh anchors of the padded frame (the conditional
            part detached; the learnable part keeps its gradient).
        enc_content: ``[B, Nc, C]`` the selected encoder features, undetached (for the
            encoder-proposal losses); None without conditional queries.
        enc_anchors: ``[B, Nc, 4]`` their refined proposal boxes, unsigmoided, undetached; None
            without conditional queries.
    """
    content: Tensor
    anchors: Tensor
    enc_content: Optional[Tensor]
    enc_anchors: Optional[Tensor]


@MODELS.register_module()
class MeldQueryGenerator(BaseModule):
    """Learnable and conditional queries, the two sets the decoder melds.

    - Learnable: ``num_learnable`` content embeddings and anchors learned from scratch; anchors
      start spread uniformly over the image with a quarter-image size (DAB-DETR,
      ``learnable_anchor_init='random'``) or as the whole image (``'image'``).
    - Conditional: the top ``num_conditional`` encoder proposals scored against the sample's
      text embeddings (:class:`ConditionalQueryGenerator`, Mask DINO's two-stage selection);
      optionally their anchors re-initialised from their predicted masks (Mask DINO section 3.3,
      mask-enhanced box initialisation).

    Args:
        embed_dims: Hidden size C.
        num_learnable: Nl (>= 0).
        num_conditional: Nc (>= 0); Nl + Nc > 0.
        proposal_base_scale: Side of the finest level's encoder grid proposals.
        mask_enhanced_box_init: Initialise conditional anchors from the proposals' masks.
        learnable_anchor_init: One of ``LEARNABLE_ANCHOR_INITS`` (see above).
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 embed_dims: int = 256,
                 num_learnable: int = 100,
                 num_conditional: int = 300,
                 proposal_base_scale: float = 0.05,
                 mask_enhanced_box_init: bool = False,
                 learnable_anchor_init: str = 'random',
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.check_num_queries(num_learnable, num_conditional)
        if learnable_anchor_init not in LEARNABLE_ANCHOR_INITS:
            raise ValueError(f'QueryMeldHead: learnable_anchor_init must be one of '
                             f'{LEARNABLE_ANCHOR_INITS}, got {learnable_anchor_init!r}')
        self.learnable_anchor_init = learnable_anchor_init
        self.embed_dims = embed_dims
        self.num_learnable = num_learnable
        self.num_conditional = num_conditional
        self.mask_enhanced_box_init = mask_enhanced_box_init
        if num_learnable > 0:
            self.learnable_content = nn.Embedding(num_learnable, embed_dims)
            self.learnable_anchors = nn.Embedding(num_learnable, 4)
        if num_conditional > 0:
            self.query_selector = ConditionalQueryGenerator(
                embed_dims, num_conditional, base_scale=proposal_base_scale)
        self.register_buffer(
            'query_types',
            torch.cat([torch.full((num_learnable, ), QUERY_TYPES['learnable']),
                       torch.full((num_conditional, ), QUERY_TYPES['conditional'])]).long(),
            persistent=False)

    @staticmethod
    def check_num_queries(num_learnable: int, num_conditional: int) -> None:
        """Raise unless both counts are >= 0 and not both 0."""
        if num_learnable < 0 or num_conditional < 0 or num_learnable + num_conditional == 0:
            raise ValueError('QueryMeldHead: num_learnable_queries and num_conditional_queries '
                             'must be >= 0 and not both 0, got '
                             f'{num_learnable}, {num_conditional}')

    @property
    def num_queries(self) -> int:
        """Number of matching queries Q = Nl + Nc."""
        return self.num_learnable + self.num_conditional

    def init_learnable_anchors(self) -> None:
        """Set the learnable anchors as ``learnable_anchor_init`` says (unsigmoided cxcywh)."""
        if self.num_learnable == 0:
            return
        with torch.no_grad():
            if self.learnable_anchor_init == 'random':  # DAB-DETR: uniform centres, 1/4 size
                centres = torch.rand(self.num_learnable, 2).clamp(0.02, 0.98)
                sizes = torch.full((self.num_learnable, 2), 0.25)
            else:  # 'image': every anchor is the whole image (size 0.99: a finite logit)
                centres = torch.full((self.num_learnable, 2), 0.5)
                sizes = torch.full((self.num_learnable, 2), 0.99)
            boxes = torch.cat([centres, sizes], -1)
            self.learnable_anchors.weight.copy_(torch.log(boxes / (1 - boxes)))

    def forward(self, memory: Tensor, spatial_shapes: Tensor,
                score_fn: Callable[[Tensor], Tensor],
                mask_fn: Optional[Callable[[Tensor], Tensor]] = None,
                valid_ratios: Optional[Tensor] = None) -> MatchingQueries:
        """Build the matching queries of a batch.

        Args:
            memory: ``[B, S, C]`` encoder memory.
            spatial_shapes: ``[L, 2]`` long.
            score_fn: Maps proposal features ``[B, S, C]`` to one score per proposal ``[B, S]``
                (the head: the best class logit over the sample's valid texts).
            mask_fn: Maps the selected proposal features ``[B, Nc, C]`` (undetached) to mask
                logits ``[B, Nc, h, w]``; needed with ``mask_enhanced_box_init``.
            valid_ratios: ``[B, 2]`` image / padded frame ``(w, h)``: encoder proposals in the
                batch padding are not selected.

        Returns:
            MatchingQueries: content, anchors and the encoder proposals (see its fields).
        """
        bsz = memory.shape[0]
        contents, anchors = [], []
        enc_content = enc_anchors = None
        if self.num_learnable > 0:
            contents.append(self.learnable_content.weight[None].expand(bsz, -1, -1))
            anchors.append(self.learnable_anchors.weight[None].expand(bsz, -1, -1))
        if self.num_conditional > 0:
            sel = self.query_selector(memory, spatial_shapes, score_fn, valid_ratios=valid_ratios)
            cond_anchors = sel['anchors']
            enc_content, enc_anchors = sel['content_undetached'], sel['anchors_undetached']
            if self.mask_enhanced_box_init:
                if mask_fn is None:
                    raise ValueError('MeldQueryGenerator: mask_enhanced_box_init needs mask_fn')
                with torch.no_grad():
                    cond_anchors = masks_to_anchor_logits(mask_fn(enc_content), cond_anchors)
            contents.append(sel['content'])
            anchors.append(cond_anchors)
        return MatchingQueries(torch.cat(contents, 1), torch.cat(anchors, 1), enc_content,
                               enc_anchors)
