"""The typed outputs of :class:`QueryMeldHead`'s ``forward`` (DINO's per-layer contract).

``forward`` returns the decoder's states and references per layer (as mmdet's DINO transformer
hands them to ``DINOHead``) plus what the predictions need; the class / box / mask predictions
per level are computed from them by ``QueryMeldHead.forward_predictions`` and consumed by
``loss_by_feat`` / ``predict_by_feat``.
"""
from typing import NamedTuple, Optional, Tuple

from torch import Tensor


class EncoderProposals(NamedTuple):
    """The top-k encoder proposals that became the conditional queries (Mask DINO two-stage).

    Attributes:
        states: ``[B, Nc, C]`` their features after the decoder's LayerNorm, undetached (the
            encoder-proposal losses supervise the encoder through them).
        boxes: ``[B, Nc, 4]`` their refined boxes, normalised cxcywh of the padded frame
            (sigmoid applied), undetached.
    """
    states: Tensor
    boxes: Tensor


class QueryMeldHeadOutputs(NamedTuple):
    """Per-layer outputs of :meth:`QueryMeldHead.forward`.

    The query axis N is ``[denoising (num_dn) | learnable (Nl) | conditional (Nc)]``; ``num_dn``
    is 0 outside denoising training. L is the number of decoder layers.

    Attributes:
        hidden_states: ``[L, B, N, C]`` each decoder layer's output after the decoder's
            LayerNorm.
        references: ``[L + 1, B, N, 4]`` normalised cxcywh boxes (sigmoid applied):
            ``references[0]`` are the initial anchors, ``references[l + 1]`` the boxes refined
            by layer ``l``. As in mmdet's DINO, the box of layer ``l`` is predicted from
            ``hidden_states[l]`` and ``references[l]``
            (``sigmoid(box_head_l(h_l) + inverse_sigmoid(references[l]))``). Look-forward-twice
            (DINO 3.5, mmdet's ``DinoTransformerDecoder``): ``references[1:]`` are undetached,
            so layer ``l``'s box loss also trains layer ``l - 1``'s refinement; the decoder
            feeds detached copies to the next layer's attention. ``references[0]`` carries the
            query generator's gradient (the learnable anchors'; conditional anchors are
            detached).
        init_states: ``[B, N, C]`` the initial queries after the decoder's LayerNorm (the
            initial prediction of Mask DINO's ``initial_pred``).
        mask_features: ``[B, C, h, w]`` per-pixel embeddings at 1/4 of the padded frame.
        text_embeds: ``[B, K, D]`` unit-norm text embeddings of each sample's vocabulary, padded
            to the batch's largest K (zeros where padded).
        text_valid: ``[B, K]`` bool, False where ``text_embeds`` is padding.
        enc_outputs: The encoder proposals (:class:`EncoderProposals`); None without
            conditional queries.
        dn_meta: Denoising metadata (``OpenVocabDenoisingGenerator``: ``pad_size``,
            ``num_dn_groups``, ``dn_query_idx``, ``dn_gt_idx``); None outside denoising
            training.
        query_types: ``[Q]`` long, the type of each matching query
            (``mmquerymeld.utils.QUERY_TYPES``: 0 learnable, 1 conditional).
    """
    hidden_states: Tensor
    references: Tensor
    init_states: Tensor
    mask_features: Tensor
    text_embeds: Tensor
    text_valid: Tensor
    enc_outputs: Optional[EncoderProposals]
    dn_meta: Optional[dict]
    query_types: Tensor

    @property
    def num_dn(self) -> int:
        """Number of denoising queries in front of the matching queries (0 without)."""
        return int(self.dn_meta['pad_size']) if self.dn_meta is not None else 0


#: ``(all_layers_cls_scores, all_layers_bbox_preds, all_layers_mask_preds)`` of
#: ``QueryMeldHead.forward_predictions``: per level (the initial queries first when
#: ``initial_pred``, then every decoder layer) class logits ``[B, N, K]``, boxes ``[B, N, 4]``
#: (normalised cxcywh of the padded frame) and mask logits ``[B, N, h, w]``.
LayerPredictions = Tuple[Tuple[Tensor, ...], Tuple[Tensor, ...], Tuple[Tensor, ...]]
