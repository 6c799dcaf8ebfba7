"""QueryMeldNet's training criterion: the orchestration over prediction levels.

Paper section 3.2: "Hungarian matching is applied across all object queries, without
differentiating between query types"; section 3.3, eq. (1): focal class loss against the text
embeddings, L1 + GIoU box loss, BCE + dice mask loss. Costs, weights, point sampling and the
per-layer / encoder / denoising supervision follow Mask DINO (Li et al., 2023) and mmdet's
Mask2Former head. Box-only ground truth (``mask_valid`` False) has no mask cost and no mask loss;
ground truth without box supervision (``box_valid`` False: semantic-task targets and panoptic
stuff, Mask DINO's ``loss_boxes_panoptic``) has no box cost and no box loss.

The parts live beside this file: matching (:mod:`.matching`), point-sampled mask losses
(:mod:`.point_mask_loss`) and denoising supervision (:mod:`.denoising_losses`); this module
prepares the targets, runs them over every level and computes the class and box terms.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType, OptMultiConfig, reduce_mean
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor, nn

from mmquerymeld.models.task_modules import (BOX_SUPERVISION, GtTargets,
                                             prepare_batch_gt_targets)
from mmquerymeld.utils import QUERY_TYPES, to_fp32
from .denoising_losses import DenoisingLossMixin
from .matching import DEFAULT_ASSIGNER, MatchIndices, PointSampledHungarianMatcher
from .point_mask_loss import DEFAULT_LOSS_DICE, DEFAULT_LOSS_MASK, PointSampledMaskLoss

DEFAULT_LOSS_CLS = dict(
    type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, reduction='mean', loss_weight=4.0)
DEFAULT_LOSS_BBOX = dict(type='L1Loss', reduction='mean', loss_weight=5.0)
DEFAULT_LOSS_IOU = dict(type='GIoULoss', reduction='mean', loss_weight=2.0)

__all__ = [
    'QueryMeldCriterion', 'DEFAULT_ASSIGNER', 'DEFAULT_LOSS_CLS', 'DEFAULT_LOSS_BBOX',
    'DEFAULT_LOSS_IOU', 'DEFAULT_LOSS_MASK', 'DEFAULT_LOSS_DICE', 'MatchIndices'
]


@MODELS.register_module()
class QueryMeldCriterion(DenoisingLossMixin, BaseModule):
    """Matches predictions to the unified (text, box, mask) targets and computes every loss.

    One Hungarian matching per image and per prediction level (final decoder layer, each
    auxiliary level, encoder proposals), over all matching queries whatever their type
    (learnable or conditional). Denoising queries are not matched: ``dn_meta`` says which gt each
    reconstructs (Mask DINO).

    Losses (normalised by the number of gt, averaged over ranks; box terms by the number of gt
    with box supervision, mask terms by the number of gt that have a mask; Mask DINO divides its
    gated box loss by all gt):

    - ``loss_cls``: sigmoid focal loss of ``pred_logits`` [B, Q, K] against one-hot text targets;
      unmatched queries are all-negative; vocabulary entries with ``text_valid`` False are
      excluded. Images with no gt contribute this term only.
    - ``loss_bbox`` / ``loss_iou``: L1 on normalised cxcywh, GIoU, matched queries whose gt has
      ``box_valid`` True only.
    - ``loss_mask`` / ``loss_dice``: BCE and dice on ``num_points`` importance-sampled points
      (Mask2Former / PointRend), matched queries whose gt has ``mask_valid`` True only.

    Keys: the final level unprefixed, auxiliary level ``i`` as ``d{i}.``, the encoder proposals as
    ``enc.``, denoising as ``dn.`` and ``dn.d{i}.``. When ``outputs['query_types']`` ([Q] or
    [B, Q], values of ``QUERY_TYPES``) is given, ``matched_conditional_frac`` (no "loss" in the
    name: logged, not optimised) is the fraction of final-level matches won by conditional
    queries.

    Args:
        assigner (ConfigType): A ``TASK_UTILS`` assigner with the ``HungarianAssigner``
            interface. Defaults to Mask DINO's costs (see ``DEFAULT_ASSIGNER``).
        loss_cls (ConfigType): Class loss (sigmoid, one-hot targets). Defaults to focal, 4.0.
        loss_bbox (ConfigType): Box regression loss. Defaults to L1, 5.0.
        loss_iou (ConfigType): Box overlap loss on xyxy. Defaults to GIoU, 2.0.
        loss_mask (ConfigType): Point-wise mask loss. Defaults to sigmoid BCE, 5.0.
        loss_dice (ConfigType): Mask overlap loss. Defaults to dice (eps 1), 5.0.
        num_points (int): Points sampled per mask for the mask losses. Defaults to 12544.
        oversample_ratio (float): Oversampling before uncertainty selection. Defaults to 3.0.
        importance_sample_ratio (float): Share of points chosen by uncertainty. Defaults to 0.75.
        num_match_points (int, optional): Uniform random points for the mask match costs.
            Defaults to ``num_points``.
        box_supervision (str): Which gt get box loss and box matching cost when
            ``gt_instances`` has no ``box_valid``: ``'things'`` (Mask DINO: not the targets of
            semantic samples nor the stuff of panoptic samples, by ``metainfo['thing_flags']``)
            or ``'all'``. Defaults to ``'things'``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 assigner: Optional[ConfigType] = None,
                 loss_cls: Optional[ConfigType] = None,
                 loss_bbox: Optional[ConfigType] = None,
                 loss_iou: Optional[ConfigType] = None,
                 loss_mask: Optional[ConfigType] = None,
                 loss_dice: Optional[ConfigType] = None,
                 num_points: int = 12544,
                 oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75,
                 num_match_points: Optional[int] = None,
                 box_supervision: str = 'things',
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_points <= 0:
            raise ValueError(f'num_points must be positive, got {num_points}')
        if box_supervision not in BOX_SUPERVISION:
            raise ValueError(f'box_supervision must be one of {BOX_SUPERVISION}, got '
                             f'{box_supervision!r}')
        self.box_supervision = box_supervision
        self.matcher = PointSampledHungarianMatcher(assigner, int(num_match_points or num_points))
        self.loss_cls = MODELS.build(copy.deepcopy(loss_cls or DEFAULT_LOSS_CLS))
        self.loss_bbox = MODELS.build(copy.deepcopy(loss_bbox or DEFAULT_LOSS_BBOX))
        self.loss_iou = MODELS.build(copy.deepcopy(loss_iou or DEFAULT_LOSS_IOU))
        self.mask_loss = PointSampledMaskLoss(loss_mask, loss_dice, num_points, oversample_ratio,
                                              importance_sample_ratio)

    # the parts' settings, under the names the criterion's config uses
    @property
    def assigner(self):
        """The matcher's assigner (``HungarianAssigner`` interface)."""
        return self.matcher.assigner

    @property
    def num_match_points(self) -> int:
        """Points of the mask match costs."""
        return self.matcher.num_points

    @property
    def loss_mask(self) -> nn.Module:
        """Point-wise mask loss."""
        return self.mask_loss.loss_mask

    @property
    def loss_dice(self) -> nn.Module:
        """Dice loss."""
        return self.mask_loss.loss_dice

    @property
    def num_points(self) -> int:
        """Points sampled per mask for the mask losses."""
        return self.mask_loss.num_points

    @property
    def oversample_ratio(self) -> float:
        """Oversampling before uncertainty selection."""
        return self.mask_loss.oversample_ratio

    @property
    def importance_sample_ratio(self) -> float:
        """Share of points chosen by uncertainty."""
        return self.mask_loss.importance_sample_ratio

    # ------------------------------------------------------------------ targets

    def prepare_targets(self, batch_gt_instances: Sequence[InstanceData],
                        batch_img_metas: Sequence[dict],
                        device: Optional[torch.device] = None) -> List[GtTargets]:
        """The batch's ``GtTargets`` (shared by denoising, matching and the losses), prepared
        once by ``prepare_batch_gt_targets`` with this criterion's ``box_supervision``; raw
        ``gt_instances`` are prepared, prepared targets pass through."""
        return prepare_batch_gt_targets(batch_gt_instances, batch_img_metas, device,
                                        self.box_supervision)

    # ------------------------------------------------------------------ matching

    def match(self, pred_logits: Tensor, pred_boxes: Tensor, pred_masks: Optional[Tensor],
              gt_instances: InstanceData, img_meta: dict) -> MatchIndices:
        """Match one image's predictions to its ground truth, blind to query type.

        Args:
            pred_logits: Class logits [Q, K] (sigmoid space, query . text).
            pred_boxes: Boxes [Q, 4], cxcywh normalised by ``img_meta['batch_input_shape']``.
            pred_masks: Mask logits [Q, h, w] at 1/4 of the batch frame, or None.
            gt_instances: Ground truth as in docs/data_contract.md (``labels``, ``bboxes`` xyxy
                pixels, ``masks``, ``mask_valid``), or its prepared ``GtTargets``.
            img_meta: Needs ``batch_input_shape``.

        Returns:
            tuple[Tensor, Tensor]: ``query_idx`` [M] and ``gt_idx`` [M], M = min(Q, N).
        """
        target = self.prepare_targets([gt_instances], [img_meta], pred_logits.device)[0]
        self._check_labels(target, pred_logits.shape[-1], None, img_meta)
        return self.matcher(pred_logits, pred_boxes, pred_masks, target, img_meta)

    # ------------------------------------------------------------------ losses

    def _level_losses(self, level: dict, targets: List[GtTargets],
                      indices: Sequence[MatchIndices], text_valid: Optional[Tensor],
                      num_gt: float, num_boxes: float, num_masks: float,
                      prefix: str) -> Dict[str, Tensor]:
        """Losses of one prediction level given its query-to-gt indices.

        Args:
            level: ``pred_logits`` [B, Q, K], ``pred_boxes`` [B, Q, 4] normalised cxcywh,
                optional ``pred_masks`` [B, Q, h, w] logits.
            targets: Prepared gt per image (see ``prepare_gt_targets``).
            indices: Per image, ``(query_idx [M_b], gt_idx [M_b])``.
            text_valid: [B, K] bool or None; False entries get no class loss.
            num_gt: Normaliser of the class loss.
            num_boxes: Normaliser of the box losses (gt with ``box_valid``).
            num_masks: Normaliser of the mask losses.
            prefix: Prepended to every key.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` and, when the level has
            masks, ``loss_mask`` and ``loss_dice``, each with ``prefix``.
        """
        logits, boxes = level['pred_logits'], level['pred_boxes']
        masks = level.get('pred_masks')
        B, Q, K = logits.shape
        device = logits.device
        batch_idx = torch.cat([
            torch.full_like(q, b) for b, (q, _) in enumerate(indices)
        ]) if indices else torch.zeros(0, dtype=torch.long, device=device)
        query_idx = torch.cat([q for q, _ in indices])
        gt_labels = torch.cat([t.labels[g] for t, (_, g) in zip(targets, indices)])

        # class: focal loss of query . text against one-hot targets (paper eq. 1, L_c)
        cls_target = torch.zeros_like(logits)
        cls_target[batch_idx, query_idx, gt_labels] = 1.0
        weight = None
        if text_valid is not None:
            weight = text_valid.to(device=device, dtype=logits.dtype)[:, None, :].expand(B, Q, K)
            weight = weight.reshape(B * Q, K)
        losses = {
            'loss_cls':
            self.loss_cls(logits.reshape(B * Q, K), cls_target.reshape(B * Q, K), weight,
                          avg_factor=num_gt)
        }

        # boxes: L1 on normalised cxcywh + GIoU (paper eq. 1, L_b), gt with box supervision only
        box_valid = torch.cat([t.box_valid[g] for t, (_, g) in zip(targets, indices)]) \
            if indices else torch.zeros(0, dtype=torch.bool, device=device)
        if bool(box_valid.any()):
            src_boxes = boxes[batch_idx[box_valid], query_idx[box_valid]]
            tgt_boxes = torch.cat([t.norm_bboxes[g]
                                   for t, (_, g) in zip(targets, indices)])[box_valid]
            losses['loss_bbox'] = self.loss_bbox(src_boxes, tgt_boxes, avg_factor=num_boxes)
            losses['loss_iou'] = self.loss_iou(
                bbox_cxcywh_to_xyxy(src_boxes), bbox_cxcywh_to_xyxy(tgt_boxes),
                avg_factor=num_boxes)
        else:
            losses['loss_bbox'] = boxes.sum() * 0.0
            losses['loss_iou'] = boxes.sum() * 0.0

        # masks: BCE + dice on importance-sampled points, gt with a mask only (paper eq. 1, L_m)
        if masks is not None:
            losses.update(self.mask_loss(masks, targets, indices, batch_idx, query_idx, num_masks))
        return {prefix + k: v for k, v in losses.items()}

    # ------------------------------------------------------------------ forward

    def forward(self, outputs: dict, batch_gt_instances: List[InstanceData],
                batch_img_metas: List[dict]) -> Dict[str, Tensor]:
        """Match and compute all losses of one batch.

        Args:
            outputs: ``pred_logits`` [B, Q, K], ``pred_boxes`` [B, Q, 4] (cxcywh in [0, 1] of
                ``batch_input_shape``), ``pred_masks`` [B, Q, h, w] logits at 1/4 of the batch
                frame, ``text_valid`` [B, K] bool (optional), ``aux_outputs`` (list of dicts
                with the same keys: initial prediction + every decoder layer but the last),
                ``enc_outputs`` (dict or None), ``dn_outputs`` (dict with the same keys plus
                ``aux_outputs``, or None), ``dn_meta`` (``dn_query_idx`` / ``dn_gt_idx``: per
                image, the dn queries with a target and the gt they reconstruct, or None),
                ``query_types`` ([Q] or [B, Q], optional).
            batch_gt_instances: Per image ``labels`` [N], ``bboxes`` [N, 4] xyxy pixels,
                ``masks`` (BitmapMasks or Tensor [N, H, W]), ``mask_valid`` [N], optional
                ``box_valid`` [N]; or the prepared ``GtTargets`` (:meth:`prepare_targets`).
            batch_img_metas: Per image meta with ``batch_input_shape`` (``task`` and
                ``thing_flags`` decide ``box_valid``).

        Returns:
            dict[str, Tensor]: The losses (see the class docstring for the keys).
        """
        logits = outputs['pred_logits']
        if torch.is_autocast_enabled(logits.device.type):
            # matching costs and losses in fp32 (a 12544-point BCE cost sum overflows fp16);
            # .float() alone is undone by autocast inside einsum / matmul
            with torch.autocast(device_type=logits.device.type, enabled=False):
                return self(to_fp32(outputs), batch_gt_instances, batch_img_metas)
        if logits.dim() != 3:
            raise ValueError(f'outputs["pred_logits"] must be [B, Q, K], got {tuple(logits.shape)}')
        B, _, K = logits.shape
        if len(batch_gt_instances) != B or len(batch_img_metas) != B:
            raise ValueError(f'batch of {B} predictions but {len(batch_gt_instances)} '
                             f'gt_instances and {len(batch_img_metas)} img_metas')
        device = logits.device
        text_valid = outputs.get('text_valid')
        if text_valid is not None and tuple(text_valid.shape) != (B, K):
            raise ValueError(f'outputs["text_valid"] has shape {tuple(text_valid.shape)}, '
                             f'expected [{B}, {K}]')
        targets = self.prepare_targets(batch_gt_instances, batch_img_metas, device)
        for b, target in enumerate(targets):
            self._check_labels(target, K, None if text_valid is None else text_valid[b],
                               batch_img_metas[b])
        num_gt = self._avg_count(sum(len(t) for t in targets), device)
        num_boxes = self._avg_count(sum(int(t.box_valid.sum()) for t in targets), device)
        num_masks = self._avg_count(sum(int(t.mask_valid.sum()) for t in targets), device)

        losses: Dict[str, Tensor] = {}
        indices = self.matcher.match_level(outputs, targets, batch_img_metas)
        losses.update(self._level_losses(outputs, targets, indices, text_valid, num_gt,
                                         num_boxes, num_masks, ''))
        if outputs.get('query_types') is not None:
            losses['matched_conditional_frac'] = self._conditional_frac(
                outputs['query_types'], indices, B, device)
        for i, aux in enumerate(outputs.get('aux_outputs') or []):
            aux_indices = self.matcher.match_level(aux, targets, batch_img_metas)
            losses.update(
                self._level_losses(aux, targets, aux_indices, aux.get('text_valid', text_valid),
                                   num_gt, num_boxes, num_masks, f'd{i}.'))
        enc = outputs.get('enc_outputs')
        if enc is not None:
            enc_indices = self.matcher.match_level(enc, targets, batch_img_metas)
            losses.update(
                self._level_losses(enc, targets, enc_indices, enc.get('text_valid', text_valid),
                                   num_gt, num_boxes, num_masks, 'enc.'))
        dn_outputs, dn_meta = outputs.get('dn_outputs'), outputs.get('dn_meta')
        if dn_outputs is not None and dn_meta is not None:
            losses.update(self._dn_losses(dn_outputs, dn_meta, targets, text_valid))
        return losses

    def loss_by_levels(self, all_layers_cls_scores: Sequence[Tensor],
                       all_layers_bbox_preds: Sequence[Tensor],
                       all_layers_mask_preds: Sequence[Tensor],
                       enc_preds: Optional[Tuple[Tensor, Tensor, Tensor]], text_valid: Tensor,
                       batch_gt_instances: List[InstanceData], batch_img_metas: List[dict],
                       dn_meta: Optional[dict] = None,
                       query_types: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """The losses of per-level predictions (the head's ``loss_by_feat`` contract).

        Args:
            all_layers_cls_scores: Per level ``[B, N, K]`` logits, the final layer last.
            all_layers_bbox_preds: Per level ``[B, N, 4]`` normalised cxcywh boxes.
            all_layers_mask_preds: Per level ``[B, N, h, w]`` mask logits.
            enc_preds: The encoder proposals' ``(logits [B, Nc, K], boxes [B, Nc, 4],
                masks [B, Nc, h, w])``, or None.
            text_valid: ``[B, K]`` bool.
            batch_gt_instances / batch_img_metas: As in :meth:`forward`.
            dn_meta: With ``pad_size``: the first ``pad_size`` of the N queries of every level
                are denoising queries (see :meth:`forward`); None without denoising.
            query_types: ``[Q]`` type of each matching query, or None.

        Returns:
            dict[str, Tensor]: As :meth:`forward`.
        """
        num_dn = int(dn_meta['pad_size']) if dn_meta is not None else 0
        levels = list(zip(all_layers_cls_scores, all_layers_bbox_preds, all_layers_mask_preds))

        def pack(sl: slice) -> List[Dict[str, Tensor]]:
            return [dict(pred_logits=lg[:, sl], pred_boxes=bx[:, sl], pred_masks=mk[:, sl],
                         text_valid=text_valid) for lg, bx, mk in levels]

        matching = pack(slice(num_dn, None))
        outputs = dict(matching[-1], aux_outputs=matching[:-1], enc_outputs=None,
                       dn_outputs=None, dn_meta=None, query_types=query_types)
        if enc_preds is not None:
            outputs['enc_outputs'] = dict(zip(('pred_logits', 'pred_boxes', 'pred_masks'),
                                              enc_preds), text_valid=text_valid)
        if dn_meta is not None:
            dn_levels = pack(slice(0, num_dn))
            outputs.update(dn_outputs=dict(dn_levels[-1], aux_outputs=dn_levels[:-1]),
                           dn_meta=dn_meta)
        return self(outputs, batch_gt_instances, batch_img_metas)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _avg_count(count: int, device: torch.device) -> float:
        """Average a count over ranks (mmdet ``reduce_mean``), at least 1."""
        return reduce_mean(torch.tensor(float(count), device=device)).clamp(min=1).item()

    @staticmethod
    def _check_labels(target: InstanceData, num_texts: int, text_valid: Optional[Tensor],
                      img_meta: dict) -> None:
        """Raise if a gt label points outside the (valid) vocabulary."""
        if len(target) == 0:
            return
        where = img_meta.get('img_path', img_meta.get('img_id', '<unknown image>'))
        labels = target.labels
        if int(labels.min()) < 0 or int(labels.max()) >= num_texts:
            raise ValueError(f'{where}: gt_instances.labels must index metainfo["texts"] '
                             f'(0..{num_texts - 1}), got {labels.tolist()}')
        if text_valid is not None and not bool(text_valid.to(labels.device)[labels].all()):
            raise ValueError(f'{where}: gt_instances.labels point to padded vocabulary entries '
                             '(text_valid False)')

    @staticmethod
    def _conditional_frac(query_types: Tensor, indices: Sequence[MatchIndices], batch_size: int,
                          device: torch.device) -> Tensor:
        """Fraction of matched queries that are conditional (section 4.1 thing/stuff analysis)."""
        query_types = query_types.to(device)
        if query_types.dim() == 1:
            query_types = query_types[None].expand(batch_size, -1)
        matched = torch.cat([query_types[b, q] for b, (q, _) in enumerate(indices)])
        if matched.numel() == 0:
            return torch.zeros((), device=device)
        return (matched == QUERY_TYPES['conditional']).float().mean().detach()
