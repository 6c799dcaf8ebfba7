"""QueryMeldHead: segmentation encoder + query meld decoder + text classifier, in mmdet's shape.

``forward(x, batch_data_samples)`` returns per-layer outputs (:class:`QueryMeldHeadOutputs`,
DINO's contract), ``loss`` -> ``loss_by_feat`` and ``predict`` -> ``predict_by_feat`` as
mmdet's ``DINOHead`` / ``Mask2FormerHead`` and mmseg's decode heads.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.layers.transformer.utils import MLP, inverse_sigmoid
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList, OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..layers.denoising import OpenVocabDenoisingGenerator
from .builders import build_meld_decoder, build_text_side
from .legacy import legacy_head_keys_hook
from .outputs import EncoderProposals, LayerPredictions, QueryMeldHeadOutputs
from .query_generator import MeldQueryGenerator
from .sample_utils import check_sample, image_valid_ratios, prepare_training_targets


@MODELS.register_module()
class QueryMeldHead(BaseModule):
    """The segmentation encoder and decoder of QueryMeldNet (paper 3.1-3.3, Figure 2 and 3).

    ``forward`` (DINO's per-layer contract, :class:`QueryMeldHeadOutputs`): the pixel decoder
    gives the memory (1/8..1/32) and 1/4 mask features; the text encoder embeds each sample's
    vocabulary (``metainfo['texts']``, padded: ``text_valid``); :class:`MeldQueryGenerator`
    builds the learnable queries and the conditional ones (encoder proposals selected by their
    best score against the valid texts); in training, :class:`OpenVocabDenoisingGenerator` adds
    denoising queries; :class:`QueryMeldDecoder` decodes ``[denoising | learnable |
    conditional]`` with iterative box refinement. :meth:`forward_predictions` turns each level
    (the initial queries when ``initial_pred``, then every layer) into class logits (text
    classifier), boxes (box head on the layer's reference) and masks (mask embedding . mask
    features); ``loss_by_feat`` runs the criterion over them, the encoder proposals and
    denoising; ``predict_by_feat`` post-processes the last layer per task (``post_processor``).

    Query strategies of Table 2: ``num_learnable_queries=400, num_conditional_queries=0``
    (learnable), ``0, 400`` (conditional), ``100, 300`` (meld). With one set empty the dual-query
    cross-attention is switched off.

    Args:
        pixel_decoder: Config of :class:`QueryMeldPixelDecoder`.
        decoder: Config of :class:`QueryMeldDecoder` (``num_layers``, ``layer_cfg``).
        text_classifier: Config of the query-text classifier (``QueryTextClassifier``;
            defaults and the former ``OpenCLIPTextClassifier``: :func:`build_text_side`).
        text_encoder: Config of the text encoder (``OpenCLIPTextEncoder``): vocabularies ->
            unit-norm embeddings ``[B, K, D]``.
        criterion: Config of the loss (``QueryMeldCriterion``); None for inference-only heads.
        post_processor: Config of the task post-processing (``QueryMeldPostProcessor``);
            ``test_cfg`` is filled in from the head's ``test_cfg`` when not given.
        embed_dims: Hidden size C of queries, memory and mask features.
        num_learnable_queries: Nl.
        num_conditional_queries: Nc.
        denoising: kwargs of :class:`OpenVocabDenoisingGenerator` (``text_dims`` / ``embed_dims``
            filled in), or None to disable denoising training.
        proposal_base_scale: Side of the finest level's encoder grid proposals.
        mask_enhanced_box_init: Initialise conditional anchors from the proposals' masks.
        learnable_anchor_init: ``'random'`` or ``'image'`` (:class:`MeldQueryGenerator`).
        initial_pred: Also predict from the initial queries (one more auxiliary output).
        share_box_head: One box-refinement MLP for all layers (Mask DINO) or one per layer.
        test_cfg: Per-task keyword arguments of the post-processing functions
            (:class:`QueryMeldPostProcessor`), e.g. ``dict(instance=dict(max_per_image=100))``.
        train_cfg: Unused, kept for the mmdet signature.
    """

    def __init__(self,
                 pixel_decoder: ConfigType,
                 decoder: ConfigType,
                 text_classifier: ConfigType,
                 text_encoder: OptConfigType = None,
                 criterion: OptConfigType = None,
                 post_processor: OptConfigType = None,
                 embed_dims: int = 256,
                 num_learnable_queries: int = 100,
                 num_conditional_queries: int = 300,
                 denoising: OptConfigType = dict(
                     num_dn_queries=100, label_noise_ratio=0.2, box_noise_scale=0.4,
                     dn_see_matching=False),
                 proposal_base_scale: float = 0.05,
                 mask_enhanced_box_init: bool = False,
                 learnable_anchor_init: str = 'random',
                 initial_pred: bool = True,
                 share_box_head: bool = True,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        MeldQueryGenerator.check_num_queries(num_learnable_queries, num_conditional_queries)
        self.embed_dims, self.initial_pred = embed_dims, initial_pred
        self.num_learnable, self.num_conditional = num_learnable_queries, num_conditional_queries
        self.train_cfg, self.test_cfg = train_cfg, dict(test_cfg) if test_cfg else {}

        pixel_decoder = copy.deepcopy(dict(pixel_decoder))
        pixel_decoder.setdefault('type', 'QueryMeldPixelDecoder')
        self.pixel_decoder = MODELS.build(pixel_decoder)
        if self.pixel_decoder.mask_feature.out_channels != embed_dims:
            raise ValueError('QueryMeldHead: pixel_decoder.out_channels (mask features) must equal '
                             f'embed_dims={embed_dims}')

        self.text_encoder, self.text_classifier = build_text_side(text_encoder, text_classifier,
                                                                  embed_dims)
        text_dims = int(self.text_encoder.text_dims)
        # checkpoints of the first layout (text side and queries) load as is
        self.register_load_state_dict_pre_hook(legacy_head_keys_hook)
        self.decoder = build_meld_decoder(decoder, embed_dims, num_learnable_queries,
                                          num_conditional_queries)
        self.num_layers = self.decoder.num_layers

        self.query_generator = MeldQueryGenerator(
            embed_dims, num_learnable_queries, num_conditional_queries,
            proposal_base_scale=proposal_base_scale,
            mask_enhanced_box_init=mask_enhanced_box_init,
            learnable_anchor_init=learnable_anchor_init)
        self.dn_generator = None
        if denoising is not None:
            dn_cfg = dict(denoising)
            dn_cfg.pop('type', None)
            self.dn_generator = OpenVocabDenoisingGenerator(
                text_dims=text_dims, embed_dims=embed_dims, **dn_cfg)

        self.mask_embed = MLP(embed_dims, embed_dims, embed_dims, 3)
        num_box_heads = 1 if share_box_head else self.num_layers
        self.box_heads = nn.ModuleList(
            [MLP(embed_dims, embed_dims, 4, 3) for _ in range(num_box_heads)])
        self._zero_box_heads()

        self.criterion = MODELS.build(criterion) if criterion is not None else None
        post_processor = dict(post_processor or dict(type='QueryMeldPostProcessor'))
        post_processor.setdefault('test_cfg', self.test_cfg)
        self.post_processor = MODELS.build(post_processor)
        self.query_generator.init_learnable_anchors()

    def init_weights(self) -> None:
        """mmengine init of the children, then the learnable anchors and zeroed box heads."""
        super().init_weights()
        self.query_generator.init_learnable_anchors()
        self._zero_box_heads()

    def _zero_box_heads(self) -> None:
        """Box refinement starts as the identity (zero deltas)."""
        for head in self.box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    @property
    def num_queries(self) -> int:
        """Number of matching queries Q = Nl + Nc."""
        return self.num_learnable + self.num_conditional

    @property
    def query_types(self) -> Tensor:
        """``[Q]`` long: 0 learnable, 1 conditional (``mmquerymeld.utils.QUERY_TYPES``)."""
        return self.query_generator.query_types

    # ------------------------------------------------------------------ helpers
    def encode_texts(self, batch_data_samples: SampleList) -> Tuple[Tensor, Tensor]:
        """Embed and pad each sample's vocabulary.

        Returns:
            tuple: ``text_embeds`` ``[B, Kmax, D]`` (zeros where padded) and ``text_valid``
            ``[B, Kmax]`` bool (valid entries first).
        """
        checked = [check_sample(sample, i) for i, sample in enumerate(batch_data_samples)]
        return self.text_encoder.encode_batch_vocabularies([texts for texts, _ in checked],
                                                           [task for _, task in checked])

    def _box_heads(self) -> List[nn.Module]:
        return [self.box_heads[0]] * self.num_layers if len(self.box_heads) == 1 \
            else list(self.box_heads)

    def predict_heads(self, normed: Tensor, mask_features: Tensor, text_embeds: Tensor,
                      text_valid: Tensor) -> Tuple[Tensor, Tensor]:
        """Class logits and mask logits of normalised query states.

        Args:
            normed: ``[B, N, C]`` (after the decoder's LayerNorm).
            mask_features: ``[B, C, h, w]``.
            text_embeds: ``[B, K, D]``. text_valid: ``[B, K]``.

        Returns:
            tuple: logits ``[B, N, K]`` and mask logits ``[B, N, h, w]``.
        """
        logits = self.text_classifier(normed, text_embeds, text_valid)
        masks = torch.einsum('bqc,bchw->bqhw', self.mask_embed(normed), mask_features)
        return logits, masks

    def text_scores(self, feats: Tensor, text_embeds: Tensor, text_valid: Tensor,
                    max_elements: int = 2**24) -> Tensor:
        """Score of each encoder proposal: its best class logit over the sample's valid texts.

        :meth:`QueryTextClassifier.max_logits`: chunks of proposals (at most ``max_elements``
        pair scores each), so memory does not grow with S x K (21504 proposals of a 1024² input
        x 10000 texts would be 0.86 GB per copy), and half the multiply-adds of the logits.

        Args:
            feats: ``[B, S, C]`` proposal features. text_embeds: ``[B, K, D]``.
            text_valid: ``[B, K]`` bool; padded entries never score.
            max_elements: Largest chunk of pair scores (elements).

        Returns:
            Tensor: ``[B, S]``, detached (it ranks the proposals).
        """
        return self.text_classifier.max_logits(feats, text_embeds, text_valid, max_elements)

    #: ``[B, 2]`` fraction of the padded frame covered by each image (``sample_utils``).
    image_valid_ratios = staticmethod(image_valid_ratios)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Sequence[Tensor], batch_data_samples: SampleList,
                batch_gt_targets: Optional[InstanceList] = None) -> QueryMeldHeadOutputs:
        """Run the encoder, build the queries and decode.

        Args:
            x: Multi-scale features ``[B, C_i, H_i, W_i]``, high to low resolution.
            batch_data_samples: Data samples with ``metainfo['texts']``, ``['task']``,
                ``['batch_input_shape']`` and, when training with denoising, ``gt_instances``.
            batch_gt_targets: The batch's prepared ``GtTargets`` (:meth:`loss` passes them);
                prepared here for denoising when not given.

        Returns:
            QueryMeldHeadOutputs: states and references per decoder layer, the initial states,
            mask features, text embeddings, encoder proposals, ``dn_meta`` and query types
            (shapes in :class:`QueryMeldHeadOutputs`).
        """
        text_embeds, text_valid = self.encode_texts(batch_data_samples)
        enc = self.pixel_decoder(x)
        mask_features = enc['mask_features']

        def score_fn(feats: Tensor) -> Tensor:
            return self.text_scores(feats, text_embeds, text_valid)

        def mask_fn(content: Tensor) -> Tensor:
            return self.predict_heads(self.decoder.norm(content), mask_features, text_embeds,
                                      text_valid)[1]

        queries = self.query_generator(
            enc['memory'], enc['spatial_shapes'], score_fn, mask_fn,
            valid_ratios=self.image_valid_ratios(batch_data_samples, enc['memory'].device))
        query, anchor_logits = queries.content, queries.anchors

        dn = None
        if self.training and self.dn_generator is not None:
            gts = batch_gt_targets or prepare_training_targets(
                self.criterion, batch_data_samples, text_embeds.device)[0]
            dn = self.dn_generator([t.labels for t in gts], [t.norm_bboxes for t in gts],
                                   text_embeds, text_valid, self.num_queries)
        num_dn, attn_mask, dn_meta = 0, None, None
        if dn is not None:
            num_dn, dn_meta = dn['dn_meta']['pad_size'], dn['dn_meta']
            query = torch.cat([dn['content'], query], 1)
            anchor_logits = torch.cat([dn['anchors'], anchor_logits], 1)
            attn_mask = dn['attn_mask']
        init_boxes = anchor_logits.sigmoid()

        # look-forward-twice (DINO 3.5): references[1:] stay undetached, so layer l's box
        # (forward_predictions: on top of references[l]) also trains layer l-1's refinement;
        # the decoder feeds detached copies to the next layer's attention
        hidden_states, references = self.decoder(
            query, value=enc['memory'], key_padding_mask=None, self_attn_mask=attn_mask,
            reference_points=init_boxes, spatial_shapes=enc['spatial_shapes'],
            level_start_index=enc['level_start_index'], valid_ratios=None,
            reg_branches=self._box_heads(), num_dn=num_dn, num_learnable=self.num_learnable,
            num_conditional=self.num_conditional)
        enc_outputs = None
        if queries.enc_content is not None:
            enc_outputs = EncoderProposals(self.decoder.norm(queries.enc_content),
                                           queries.enc_anchors.sigmoid())
        return QueryMeldHeadOutputs(
            hidden_states=hidden_states, references=references,
            init_states=self.decoder.norm(query), mask_features=mask_features,
            text_embeds=text_embeds, text_valid=text_valid, enc_outputs=enc_outputs,
            dn_meta=dn_meta, query_types=self.query_types)

    def forward_predictions(self, outs: QueryMeldHeadOutputs,
                            last_only: bool = False) -> LayerPredictions:
        """Class, box and mask predictions per level from :meth:`forward`'s outputs.

        Args:
            outs: The head's forward outputs.
            last_only: Predict the last decoder layer only (inference).

        Returns:
            tuple: ``(all_layers_cls_scores, all_layers_bbox_preds, all_layers_mask_preds)``,
            each a tuple over levels (the initial queries first when ``initial_pred`` and not
            ``last_only``, then the decoder layers) of ``[B, N, K]`` logits, ``[B, N, 4]``
            normalised cxcywh boxes and ``[B, N, h, w]`` mask logits (N includes the denoising
            queries).
        """
        box_heads = self._box_heads()
        levels = []  # (state, box) per level
        if self.initial_pred and not last_only:
            levels.append((outs.init_states, outs.references[0]))
        layer_ids = [self.num_layers - 1] if last_only else range(self.num_layers)
        for lid in layer_ids:
            state = outs.hidden_states[lid]
            delta = box_heads[lid](state)
            levels.append((state, (delta + inverse_sigmoid(outs.references[lid],
                                                           eps=1e-3)).sigmoid()))
        cls_scores, bbox_preds, mask_preds = [], [], []
        for state, box in levels:
            logits, masks = self.predict_heads(state, outs.mask_features, outs.text_embeds,
                                               outs.text_valid)
            cls_scores.append(logits)
            bbox_preds.append(box)
            mask_preds.append(masks)
        return tuple(cls_scores), tuple(bbox_preds), tuple(mask_preds)

    def encoder_predictions(
            self, outs: QueryMeldHeadOutputs) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """The encoder proposals' logits ``[B, Nc, K]``, boxes ``[B, Nc, 4]`` (normalised
        cxcywh) and mask logits ``[B, Nc, h, w]``; None without conditional queries."""
        if outs.enc_outputs is None:
            return None
        logits, masks = self.predict_heads(outs.enc_outputs.states, outs.mask_features,
                                           outs.text_embeds, outs.text_valid)
        return logits, outs.enc_outputs.boxes, masks

    # ------------------------------------------------------------------ loss
    def loss(self, x: Sequence[Tensor], batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Forward and compute the criterion's losses (``forward`` -> ``loss_by_feat``).

        Returns:
            dict[str, Tensor]: the criterion's loss terms (keys containing ``loss``).
        """
        if self.criterion is None:
            raise RuntimeError('QueryMeldHead.loss: the head was built without a criterion')
        # prepared once: denoising, matching and the losses share the targets
        targets, batch_img_metas = prepare_training_targets(self.criterion, batch_data_samples,
                                                            x[0].device)
        outs = self(x, batch_data_samples, targets)
        enc_preds = self.encoder_predictions(outs)  # first, as the encoder's graph was built
        return self.loss_by_feat(*self.forward_predictions(outs), enc_preds, outs.text_valid,
                                 targets, batch_img_metas, outs.dn_meta)

    def loss_by_feat(self, all_layers_cls_scores: Sequence[Tensor],
                     all_layers_bbox_preds: Sequence[Tensor],
                     all_layers_mask_preds: Sequence[Tensor],
                     enc_preds: Optional[Tuple[Tensor, Tensor, Tensor]], text_valid: Tensor,
                     batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                     dn_meta: Optional[dict] = None) -> Dict[str, Tensor]:
        """Losses of every level, the encoder proposals and the denoising queries.

        Args:
            all_layers_cls_scores: Per level ``[B, N, K]`` (see :meth:`forward_predictions`).
            all_layers_bbox_preds: Per level ``[B, N, 4]`` normalised cxcywh.
            all_layers_mask_preds: Per level ``[B, N, h, w]``.
            enc_preds: The encoder proposals' predictions (:meth:`encoder_predictions`), or
                None.
            text_valid: ``[B, K]`` bool.
            batch_gt_instances: Per image prepared ``GtTargets`` (or raw ``gt_instances``).
            batch_img_metas: Per image meta with ``batch_input_shape``.
            dn_meta: Denoising metadata (the first ``dn_meta['pad_size']`` queries of every
                level are denoising queries), or None.

        Returns:
            dict[str, Tensor]: the criterion's terms: final layer unprefixed, earlier levels
            ``d{i}.``, encoder proposals ``enc.``, denoising ``dn.`` / ``dn.d{i}.``.
        """
        losses = self.criterion.loss_by_levels(
            all_layers_cls_scores, all_layers_bbox_preds, all_layers_mask_preds, enc_preds,
            text_valid, batch_gt_instances, batch_img_metas, dn_meta, self.query_types)
        if dn_meta is None and self.dn_generator is not None:
            # keep the denoising label projection in the graph (DDP without unused parameters)
            key = next(k for k in losses if 'loss' in k)
            zero = sum(p.sum() for p in self.dn_generator.parameters()) * 0.0
            losses[key] = losses[key] + zero
        return losses

    # ------------------------------------------------------------------ predict
    def predict(self, x: Sequence[Tensor], batch_data_samples: SampleList,
                rescale: bool = True) -> List[Dict[str, object]]:
        """Predict and post-process per task (``forward`` -> ``predict_by_feat``): per image
        the data-sample fields to set (docs/data_contract.md) at ``ori_shape`` (``rescale``) or
        ``img_shape``; the samples carry ``texts``, ``task`` and the frame keys."""
        batch_img_metas = [sample.metainfo for sample in batch_data_samples]
        outs = self(x, batch_data_samples)
        return self.predict_by_feat(*self.forward_predictions(outs, last_only=True),
                                    batch_img_metas, rescale=rescale, num_dn=outs.num_dn)

    def predict_by_feat(self, all_layers_cls_scores: Sequence[Tensor],
                        all_layers_bbox_preds: Sequence[Tensor],
                        all_layers_mask_preds: Sequence[Tensor], batch_img_metas: List[dict],
                        rescale: bool = True, num_dn: int = 0) -> List[Dict[str, object]]:
        """Post-process the last level per image and task
        (:meth:`QueryMeldPostProcessor.predict_by_feat`; arguments as there)."""
        return self.post_processor.predict_by_feat(
            all_layers_cls_scores, all_layers_bbox_preds, all_layers_mask_preds,
            batch_img_metas, self.query_types, rescale=rescale, num_dn=num_dn)
