"""QueryMeldHead: segmentation encoder + query meld decoder + text classifier + criterion."""
import copy
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.layers.transformer.utils import MLP
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmquerymeld.utils import QUERY_TYPES, TASKS
from ..layers.denoising import OpenVocabDenoisingGenerator
from ..layers.query_meld_decoder import QueryMeldDecoder
from ..layers.query_selection import ConditionalQueryGenerator, masks_to_anchor_logits
from ..text import legacy_text_keys_hook, split_legacy_text_cfg
from .postprocessing import postprocess_by_task


def _check_sample(sample, index: int) -> Tuple[List[str], str]:
    """Return ``(texts, task)`` of a data sample, or raise a clear error."""
    meta = sample.metainfo
    texts = meta.get('texts', None)
    task = meta.get('task', None)
    where = f"data sample {index} (img_path={meta.get('img_path', '?')})"
    if texts is None or isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"QueryMeldHead: {where}: metainfo['texts'] must be a non-empty list of "
                         f'str (the vocabulary), got {texts!r}')
    if task not in TASKS:
        raise ValueError(f"QueryMeldHead: {where}: metainfo['task']={task!r} is not one of "
                         f'{TASKS}')
    if 'batch_input_shape' not in meta:
        raise ValueError(f"QueryMeldHead: {where}: metainfo['batch_input_shape'] is missing; "
                         'run the data preprocessor (DetDataPreprocessor) first')
    return list(texts), task


@MODELS.register_module()
class QueryMeldHead(BaseModule):
    """The segmentation encoder and decoder of QueryMeldNet (paper 3.1-3.3, Figure 2 and 3).

    Pipeline for a batch:

    1. The pixel decoder (multi-scale deformable encoder) turns backbone features into the
       memory (1/8..1/32) and the 1/4-resolution mask features.
    2. The text encoder embeds each sample's vocabulary (``metainfo['texts']``) into
       ``text_embeds [B, K, D]`` (padded, ``text_valid [B, K]``).
    3. Conditional queries: encoder proposals scored against the text embeddings, top-k
       (``num_conditional_queries``) selected (:class:`ConditionalQueryGenerator`); optionally
       their anchors re-initialised from their predicted masks (Mask DINO mask-enhanced boxes).
    4. Learnable queries: ``num_learnable_queries`` content embeddings and anchors.
    5. Training only: denoising queries from noised ground truth
       (:class:`OpenVocabDenoisingGenerator`).
    6. The query meld decoder (:class:`QueryMeldDecoder`) over ``[denoising | learnable |
       conditional]``; per layer (and for the initial queries) class logits = text classifier of the
       normalised query against the text embeddings, masks = mask embedding . mask features,
       boxes = iterative refinement.

    Query strategies of Table 2: ``num_learnable_queries=400, num_conditional_queries=0``
    (learnable), ``0, 400`` (conditional), ``100, 300`` (meld). With one set empty the dual-query
    cross-attention is switched off.

    Args:
        pixel_decoder: Config of :class:`QueryMeldPixelDecoder`.
        decoder: Config of :class:`QueryMeldDecoder` (``num_layers``, ``layer_cfg``).
        text_classifier: Config of the query-text classifier (``QueryTextClassifier``);
            ``query_dims`` defaults to ``embed_dims``, ``text_dims`` to the encoder's. A config of
            the former ``OpenCLIPTextClassifier`` (with ``text_encoder`` None) is split into the
            two with a deprecation warning (:func:`split_legacy_text_cfg`).
        text_encoder: Config of the text encoder (``OpenCLIPTextEncoder``): vocabularies ->
            unit-norm embeddings ``[B, K, D]``.
        criterion: Config of the loss (``QueryMeldCriterion``); None for inference-only heads.
        embed_dims: Hidden size C of queries, memory and mask features.
        num_learnable_queries: Nl.
        num_conditional_queries: Nc.
        denoising: kwargs of :class:`OpenVocabDenoisingGenerator` (``text_dims`` / ``embed_dims``
            filled in), or None to disable denoising training.
        proposal_base_scale: Side of the finest level's encoder grid proposals.
        mask_enhanced_box_init: Initialise conditional anchors from the proposals' masks.
        initial_pred: Also predict from the initial queries (one more auxiliary output).
        share_box_head: One box-refinement MLP for all layers (Mask DINO) or one per layer.
        test_cfg: Per-task keyword arguments of the post-processing functions, e.g.
            ``dict(panoptic=dict(object_mask_thr=0.25), instance=dict(max_per_image=100))``.
        train_cfg: Unused, kept for the mmdet signature.
    """

    def __init__(self,
                 pixel_decoder: ConfigType,
                 decoder: ConfigType,
                 text_classifier: ConfigType,
                 text_encoder: OptConfigType = None,
                 criterion: OptConfigType = None,
                 embed_dims: int = 256,
                 num_learnable_queries: int = 100,
                 num_conditional_queries: int = 300,
                 denoising: OptConfigType = dict(
                     num_dn_queries=100, label_noise_ratio=0.2, box_noise_scale=0.4,
                     dn_see_matching=False),
                 proposal_base_scale: float = 0.05,
                 mask_enhanced_box_init: bool = False,
                 initial_pred: bool = True,
                 share_box_head: bool = True,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_learnable_queries < 0 or num_conditional_queries < 0 or \
                num_learnable_queries + num_conditional_queries == 0:
            raise ValueError('QueryMeldHead: num_learnable_queries and num_conditional_queries '
                             'must be >= 0 and not both 0, got '
                             f'{num_learnable_queries}, {num_conditional_queries}')
        self.embed_dims = embed_dims
        self.num_learnable = num_learnable_queries
        self.num_conditional = num_conditional_queries
        self.mask_enhanced_box_init = mask_enhanced_box_init
        self.initial_pred = initial_pred
        self.train_cfg = train_cfg
        self.test_cfg = dict(test_cfg) if test_cfg else {}

        pixel_decoder = copy.deepcopy(dict(pixel_decoder))
        pixel_decoder.setdefault('type', 'QueryMeldPixelDecoder')
        self.pixel_decoder = MODELS.build(pixel_decoder)
        if self.pixel_decoder.mask_feature.out_channels != embed_dims:
            raise ValueError('QueryMeldHead: pixel_decoder.out_channels (mask features) must equal '
                             f'embed_dims={embed_dims}')

        text_classifier = copy.deepcopy(dict(text_classifier))
        if text_classifier.get('type') == 'OpenCLIPTextClassifier' and text_encoder is None:
            text_encoder, text_classifier = split_legacy_text_cfg(text_classifier)
            print_log('QueryMeldHead: text_classifier=OpenCLIPTextClassifier is deprecated; split '
                      'into text_encoder=OpenCLIPTextEncoder + QueryTextClassifier',
                      logger='current', level=logging.WARNING)
        if text_encoder is None:
            raise ValueError('QueryMeldHead: text_encoder (e.g. OpenCLIPTextEncoder) is required')
        self.text_encoder = MODELS.build(text_encoder)
        text_dims = int(self.text_encoder.text_dims)
        text_classifier.setdefault('query_dims', embed_dims)
        text_classifier.setdefault('text_dims', text_dims)
        self.text_classifier = MODELS.build(text_classifier)
        # checkpoints of the former OpenCLIPTextClassifier load as is
        self.register_load_state_dict_pre_hook(legacy_text_keys_hook)

        decoder = copy.deepcopy(dict(decoder))
        decoder.pop('type', None)
        if self.num_learnable == 0 or self.num_conditional == 0:
            # one query set only: nothing to meld (and no unused parameters under DDP)
            layer_cfg = decoder.setdefault('layer_cfg', {})
            layer_cfg['dual_attn_cfg'] = dict(layer_cfg.get('dual_attn_cfg') or {}, mode='none')
        self.decoder = QueryMeldDecoder(**decoder)
        if self.decoder.embed_dims != embed_dims:
            raise ValueError(f'QueryMeldHead: decoder embed_dims {self.decoder.embed_dims} != '
                             f'embed_dims {embed_dims}')
        self.num_layers = self.decoder.num_layers

        if self.num_learnable > 0:
            self.learnable_content = nn.Embedding(self.num_learnable, embed_dims)
            self.learnable_anchors = nn.Embedding(self.num_learnable, 4)
        if self.num_conditional > 0:
            self.query_selector = ConditionalQueryGenerator(
                embed_dims, self.num_conditional, base_scale=proposal_base_scale)
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
        for head in self.box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

        self.criterion = MODELS.build(criterion) if criterion is not None else None
        self.register_buffer(
            'query_types',
            torch.cat([torch.full((self.num_learnable, ), QUERY_TYPES['learnable']),
                       torch.full((self.num_conditional, ), QUERY_TYPES['conditional'])]).long(),
            persistent=False)
        self._init_learnable_queries()

    def _init_learnable_queries(self) -> None:
        """Anchors spread uniformly over the image with a quarter-image size (DAB-DETR style)."""
        if self.num_learnable == 0:
            return
        with torch.no_grad():
            centres = torch.rand(self.num_learnable, 2).clamp(0.02, 0.98)
            sizes = torch.full((self.num_learnable, 2), 0.25)
            boxes = torch.cat([centres, sizes], -1)
            self.learnable_anchors.weight.copy_(torch.log(boxes / (1 - boxes)))

    def init_weights(self) -> None:
        """mmengine init of the children, then the learnable anchors and zeroed box heads."""
        super().init_weights()
        self._init_learnable_queries()
        for head in self.box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    @property
    def num_queries(self) -> int:
        """Number of matching queries Q = Nl + Nc."""
        return self.num_learnable + self.num_conditional

    # ------------------------------------------------------------------ helpers
    def encode_texts(self, batch_data_samples: SampleList) -> Tuple[Tensor, Tensor]:
        """Embed and pad each sample's vocabulary.

        Returns:
            tuple: ``text_embeds`` ``[B, Kmax, D]`` (zeros where padded) and ``text_valid``
            ``[B, Kmax]`` bool (valid entries first).
        """
        texts, tasks = [], []
        for i, sample in enumerate(batch_data_samples):
            sample_texts, task = _check_sample(sample, i)
            texts.append(sample_texts)
            tasks.append(task)
        text_embeds, text_valid = self.text_encoder.encode_batch_vocabularies(texts, tasks)
        return text_embeds, text_valid

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

    @staticmethod
    def _normalised_gt(batch_data_samples: SampleList) -> Tuple[List[Tensor], List[Tensor]]:
        """Ground-truth labels and boxes as normalised cxcywh of the padded batch frame."""
        labels, boxes = [], []
        for i, sample in enumerate(batch_data_samples):
            gt = sample.gt_instances
            if 'bboxes' not in gt or 'labels' not in gt:
                raise ValueError(f'QueryMeldHead: data sample {i}: gt_instances needs bboxes and '
                                 'labels for training')
            pad_h, pad_w = sample.metainfo['batch_input_shape'][:2]
            b = gt.bboxes
            b = b.tensor if hasattr(b, 'tensor') else b
            b = bbox_xyxy_to_cxcywh(b.float()) / b.new_tensor([pad_w, pad_h, pad_w, pad_h]).float()
            labels.append(gt.labels.long())
            boxes.append(b.clamp(0, 1))
        return labels, boxes

    @staticmethod
    def image_valid_ratios(batch_data_samples: SampleList, device: torch.device) -> Tensor:
        """Fraction of the padded batch frame covered by each image.

        Returns:
            Tensor: ``[B, 2]`` ``(img_w / pad_w, img_h / pad_h)`` (1 where ``img_shape`` is
            missing).
        """
        ratios = []
        for sample in batch_data_samples:
            meta = sample.metainfo
            pad_h, pad_w = meta['batch_input_shape'][:2]
            img_h, img_w = meta.get('img_shape', (pad_h, pad_w))[:2]
            ratios.append((min(img_w / pad_w, 1.0), min(img_h / pad_h, 1.0)))
        return torch.tensor(ratios, dtype=torch.float32, device=device)

    # ------------------------------------------------------------------ forward
    def _matching_queries(self, enc: dict, text_embeds: Tensor, text_valid: Tensor,
                          valid_ratios: Optional[Tensor] = None
                          ) -> Tuple[Tensor, Tensor, Optional[Dict[str, Tensor]]]:
        """Learnable and conditional queries (paper 3.2, Figure 3 (a)-(c)).

        Args:
            enc: Pixel decoder outputs. text_embeds: ``[B, K, D]``. text_valid: ``[B, K]``.
            valid_ratios: ``[B, 2]`` image / padded frame (see :meth:`image_valid_ratios`):
                encoder proposals in the batch padding are not selected.

        Returns:
            tuple: content ``[B, Q, C]``, anchors ``[B, Q, 4]`` (unsigmoided cxcywh), ordered
            (learnable, conditional), and the encoder-proposal predictions (None without
            conditional queries; masks only computed when training or for mask-enhanced boxes).
        """
        memory, mask_features = enc['memory'], enc['mask_features']
        bsz = memory.shape[0]
        contents, anchors = [], []
        enc_outputs = None
        if self.num_learnable > 0:
            contents.append(self.learnable_content.weight[None].expand(bsz, -1, -1))
            anchors.append(self.learnable_anchors.weight[None].expand(bsz, -1, -1))
        if self.num_conditional > 0:

            def score_fn(feats: Tensor) -> Tensor:
                logits = self.text_classifier(feats, text_embeds, text_valid)
                return logits.masked_fill(~text_valid[:, None], float('-inf')).max(-1).values

            sel = self.query_selector(memory, enc['spatial_shapes'], score_fn,
                                      valid_ratios=valid_ratios)
            cond_anchors = sel['anchors']
            if self.training or self.mask_enhanced_box_init:
                enc_logits, enc_masks = self.predict_heads(
                    self.decoder.norm(sel['content_undetached']), mask_features, text_embeds,
                    text_valid)
                enc_outputs = dict(pred_logits=enc_logits,
                                   pred_boxes=sel['anchors_undetached'].sigmoid(),
                                   pred_masks=enc_masks)
                if self.mask_enhanced_box_init:
                    cond_anchors = masks_to_anchor_logits(enc_masks.detach(), cond_anchors)
            contents.append(sel['content'])
            anchors.append(cond_anchors)
        return torch.cat(contents, 1), torch.cat(anchors, 1), enc_outputs

    def forward(self, x: Sequence[Tensor], batch_data_samples: SampleList) -> Dict[str, object]:
        """Run encoder and decoder.

        Args:
            x: Multi-scale features ``[B, C_i, H_i, W_i]``, high to low resolution.
            batch_data_samples: Data samples with ``metainfo['texts']``, ``['task']``,
                ``['batch_input_shape']`` and, when training with denoising, ``gt_instances``.

        Returns:
            dict in the criterion's format: ``pred_logits [B, Q, K]``, ``pred_boxes [B, Q, 4]``
            (normalised cxcywh of the padded frame), ``pred_masks [B, Q, H/4, W/4]``,
            ``text_valid [B, K]``, ``aux_outputs`` (training: initial prediction + all layers
            but the last; eval: empty), ``enc_outputs`` (top-k encoder proposals; None without
            conditional queries, and in eval mode unless mask-enhanced boxes are on),
            ``dn_outputs`` / ``dn_meta`` (None outside denoising training), ``query_types [Q]``
            (0 learnable, 1 conditional) and ``text_embeds [B, K, D]``.
        """
        text_embeds, text_valid = self.encode_texts(batch_data_samples)
        enc = self.pixel_decoder(x)
        mask_features = enc['mask_features']
        query, anchor_logits, enc_outputs = self._matching_queries(
            enc, text_embeds, text_valid,
            self.image_valid_ratios(batch_data_samples, enc['memory'].device))

        dn = None
        if self.training and self.dn_generator is not None:
            gt_labels, gt_boxes = self._normalised_gt(batch_data_samples)
            dn = self.dn_generator(gt_labels, gt_boxes, text_embeds, text_valid,
                                   self.num_queries)
        num_dn, attn_mask = 0, None
        if dn is not None:
            num_dn = dn['dn_meta']['pad_size']
            query = torch.cat([dn['content'], query], 1)
            anchor_logits = torch.cat([dn['anchors'], anchor_logits], 1)
            attn_mask = dn['attn_mask']
        init_boxes = anchor_logits.sigmoid()

        hidden, boxes = self.decoder(
            query, init_boxes, enc['memory'], enc['spatial_shapes'], enc['level_start_index'],
            self._box_heads(), self_attn_mask=attn_mask, num_dn=num_dn,
            num_learnable=self.num_learnable, num_conditional=self.num_conditional)
        states = [(self.decoder.norm(query), init_boxes)] if self.initial_pred else []
        states += list(zip(hidden, boxes))
        if not self.training:
            states = states[-1:]  # inference needs the last layer only
        levels = []
        for state, box in states:
            logits, masks = self.predict_heads(state, mask_features, text_embeds, text_valid)
            levels.append((logits, box, masks))

        def pack(sl: slice) -> List[Dict[str, Tensor]]:
            return [dict(pred_logits=lg[:, sl], pred_boxes=bx[:, sl], pred_masks=mk[:, sl],
                         text_valid=text_valid) for lg, bx, mk in levels]

        matching = pack(slice(num_dn, None))
        outputs = dict(matching[-1])
        outputs.update(aux_outputs=matching[:-1], enc_outputs=enc_outputs, dn_outputs=None,
                       dn_meta=None, query_types=self.query_types, text_embeds=text_embeds)
        if dn is not None:
            dn_preds = pack(slice(0, num_dn))
            outputs['dn_outputs'] = dict(dn_preds[-1], aux_outputs=dn_preds[:-1])
            outputs['dn_meta'] = dn['dn_meta']
        return outputs

    # ------------------------------------------------------------------ loss
    def loss(self, x: Sequence[Tensor], batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Forward and compute the criterion's losses.

        Returns:
            dict[str, Tensor]: the criterion's loss terms (keys containing ``loss``).
        """
        if self.criterion is None:
            raise RuntimeError('QueryMeldHead.loss: the head was built without a criterion')
        outputs = self(x, batch_data_samples)
        batch_gt_instances, batch_img_metas = [], []
        for i, sample in enumerate(batch_data_samples):
            gt = sample.gt_instances
            if 'mask_valid' not in gt:
                raise ValueError(f'QueryMeldHead.loss: data sample {i}: gt_instances.mask_valid '
                                 'is missing (see docs/data_contract.md; PackQueryMeldInputs '
                                 'sets it)')
            batch_gt_instances.append(gt)
            batch_img_metas.append(sample.metainfo)
        losses = self.criterion(outputs, batch_gt_instances, batch_img_metas)
        if outputs['dn_outputs'] is None and self.dn_generator is not None:
            # keep the denoising label projection in the graph (DDP without unused parameters)
            key = next(k for k in losses if 'loss' in k)
            zero = sum(p.sum() for p in self.dn_generator.parameters()) * 0.0
            losses[key] = losses[key] + zero
        return losses

    # ------------------------------------------------------------------ predict
    def predict(self, x: Sequence[Tensor], batch_data_samples: SampleList,
                rescale: bool = True) -> List[Dict[str, object]]:
        """Predict and post-process per task (docs/data_contract.md, "Predictions").

        Args:
            x: Multi-scale features.
            batch_data_samples: Data samples with ``texts``, ``task``, ``img_shape``,
                ``ori_shape``, ``scale_factor``, ``batch_input_shape``.
            rescale: Return results at ``ori_shape`` (else at ``img_shape``).

        Returns:
            list[dict]: per image the data-sample fields to set (``pred_sem_seg``,
            ``pred_instances``, ``pred_panoptic_seg``), as returned by the post-processing
            functions of :mod:`mmquerymeld.models.heads.postprocessing`.
        """
        outputs = self(x, batch_data_samples)
        results = []
        for b, sample in enumerate(batch_data_samples):
            results.append(self.predict_single(outputs['pred_logits'][b],
                                               outputs['pred_masks'][b],
                                               outputs['pred_boxes'][b], sample.metainfo,
                                               rescale))
        return results

    def to_image_frame(self, mask_logits: Tensor, boxes: Tensor, meta: dict,
                       rescale: bool = True) -> Tuple[Tensor, Tensor]:
        """Bring 1/4-resolution masks and normalised boxes to the output frame.

        Args:
            mask_logits: ``[Q, h, w]`` on the padded frame at 1/4 resolution.
            boxes: ``[Q, 4]`` normalised cxcywh of the padded frame.
            meta: Image meta (``batch_input_shape``, ``img_shape``, ``ori_shape``,
                ``scale_factor``).
            rescale: Target ``ori_shape`` (True) or ``img_shape``.

        Returns:
            tuple: mask logits ``[Q, H, W]`` and xyxy pixel boxes ``[Q, 4]`` of the target frame.
        """
        pad_h, pad_w = meta['batch_input_shape'][:2]
        img_h, img_w = meta['img_shape'][:2]
        masks = F.interpolate(mask_logits[None], size=(pad_h, pad_w), mode='bilinear',
                              align_corners=False)[0, :, :img_h, :img_w]
        boxes = bbox_cxcywh_to_xyxy(boxes) * boxes.new_tensor([pad_w, pad_h, pad_w, pad_h])
        out_h, out_w = img_h, img_w
        if rescale:
            out_h, out_w = meta['ori_shape'][:2]
            masks = F.interpolate(masks[None], size=(out_h, out_w), mode='bilinear',
                                  align_corners=False)[0]
            sf = meta.get('scale_factor', (1.0, 1.0))
            boxes = boxes / boxes.new_tensor([sf[0], sf[1], sf[0], sf[1]])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, out_h)
        return masks, boxes

    def predict_single(self, logits: Tensor, mask_logits: Tensor, boxes: Tensor, meta: dict,
                       rescale: bool = True) -> Dict[str, object]:
        """Post-process one image's final-layer predictions for its task.

        Args:
            logits: ``[Q, Kmax]`` class logits (columns beyond the image's texts are padding).
            mask_logits: ``[Q, h, w]``. boxes: ``[Q, 4]`` normalised cxcywh. meta: image meta.
            rescale: See :meth:`predict`.

        Returns:
            dict: data-sample fields for the task.
        """
        texts = list(meta['texts'])
        task = meta['task']
        masks, boxes_xyxy = self.to_image_frame(mask_logits, boxes, meta, rescale)
        return postprocess_by_task(task, logits[:, :len(texts)], masks, boxes_xyxy,
                                   self.query_types, thing_flags=meta.get('thing_flags', None),
                                   **dict(self.test_cfg.get(task, {})))
