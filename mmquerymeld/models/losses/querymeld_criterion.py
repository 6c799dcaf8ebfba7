"""QueryMeldNet's training criterion: Hungarian matching blind to query type, and the losses.

Paper section 3.2: "Hungarian matching is applied across all object queries, without
differentiating between query types"; section 3.3, eq. (1): focal class loss against the text
embeddings, L1 + GIoU box loss, BCE + dice mask loss. Costs, weights, point sampling and the
per-layer / encoder / denoising supervision follow Mask DINO (Li et al., 2023) and mmdet's
Mask2Former head. Box-only ground truth (``mask_valid`` False) has no mask cost and no mask loss.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmcv.ops import point_sample
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.utils import get_uncertain_point_coords_with_randomness
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType, OptMultiConfig, reduce_mean
from mmquerymeld.models.task_modules import batch_shape, prepare_gt_targets
from mmquerymeld.utils import QUERY_TYPES

#: Mask DINO's matcher weights: class 4 (focal), box L1 5, GIoU 2, mask BCE 5, dice 5.
DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', alpha=0.25, gamma=2.0, weight=4.0),
        dict(type='BBoxL1Cost', box_format='xywh', weight=5.0),
        dict(type='IoUCost', iou_mode='giou', weight=2.0),
        dict(type='GatedCrossEntropyLossCost', use_sigmoid=True, weight=5.0),
        dict(type='GatedDiceCost', pred_act=True, eps=1.0, weight=5.0),
    ])
DEFAULT_LOSS_CLS = dict(
    type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, reduction='mean', loss_weight=4.0)
DEFAULT_LOSS_BBOX = dict(type='L1Loss', reduction='mean', loss_weight=5.0)
DEFAULT_LOSS_IOU = dict(type='GIoULoss', reduction='mean', loss_weight=2.0)
DEFAULT_LOSS_MASK = dict(
    type='CrossEntropyLoss', use_sigmoid=True, reduction='mean', loss_weight=5.0)
DEFAULT_LOSS_DICE = dict(
    type='DiceLoss', use_sigmoid=True, activate=True, reduction='mean', naive_dice=True,
    eps=1.0, loss_weight=5.0)

MatchIndices = Tuple[Tensor, Tensor]


@MODELS.register_module()
class QueryMeldCriterion(BaseModule):
    """Matches predictions to the unified (text, box, mask) targets and computes every loss.

    One Hungarian matching per image and per prediction level (final decoder layer, each
    auxiliary level, encoder proposals), over all matching queries whatever their type
    (learnable or conditional). Denoising queries are not matched: ``dn_meta`` says which gt each
    reconstructs (Mask DINO).

    Losses (all normalised by the number of gt, averaged over ranks; mask terms by the number of
    gt that have a mask):

    - ``loss_cls``: sigmoid focal loss of ``pred_logits`` [B, Q, K] against one-hot text targets;
      unmatched queries are all-negative; vocabulary entries with ``text_valid`` False are
      excluded. Images with no gt contribute this term only.
    - ``loss_bbox`` / ``loss_iou``: L1 on normalised cxcywh, GIoU, matched queries only.
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
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.assigner = TASK_UTILS.build(copy.deepcopy(assigner or DEFAULT_ASSIGNER))
        self.loss_cls = MODELS.build(copy.deepcopy(loss_cls or DEFAULT_LOSS_CLS))
        self.loss_bbox = MODELS.build(copy.deepcopy(loss_bbox or DEFAULT_LOSS_BBOX))
        self.loss_iou = MODELS.build(copy.deepcopy(loss_iou or DEFAULT_LOSS_IOU))
        self.loss_mask = MODELS.build(copy.deepcopy(loss_mask or DEFAULT_LOSS_MASK))
        self.loss_dice = MODELS.build(copy.deepcopy(loss_dice or DEFAULT_LOSS_DICE))
        if num_points <= 0:
            raise ValueError(f'num_points must be positive, got {num_points}')
        self.num_points = int(num_points)
        self.oversample_ratio = float(oversample_ratio)
        self.importance_sample_ratio = float(importance_sample_ratio)
        self.num_match_points = int(num_match_points or num_points)

    # ------------------------------------------------------------------ matching

    @torch.no_grad()
    def _match_prepared(self, pred_logits: Tensor, pred_boxes: Tensor,
                        pred_masks: Optional[Tensor], target: InstanceData,
                        img_meta: dict) -> MatchIndices:
        """Hungarian matching of one image against prepared targets (see ``match``).

        Returns:
            tuple[Tensor, Tensor]: ``query_idx`` [M] and ``gt_idx`` [M] (long), by query index.
        """
        device = pred_logits.device
        num_gt = len(target)
        if num_gt == 0 or pred_logits.shape[0] == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone()
        H, W = batch_shape(img_meta)
        factor = pred_boxes.new_tensor([W, H, W, H]).float()
        pred = InstanceData(
            scores=pred_logits.float(),
            bboxes=bbox_cxcywh_to_xyxy(pred_boxes.float()) * factor)
        gt = InstanceData(labels=target.labels, bboxes=target.bboxes, mask_valid=target.mask_valid)
        valid = target.mask_valid
        if pred_masks is not None and bool(valid.any()):
            # Mask2Former matcher: the same uniform random points for predictions and targets.
            num_q = pred_masks.shape[0]
            coords = torch.rand((1, self.num_match_points, 2), device=device)
            pred.masks = point_sample(pred_masks.float().unsqueeze(1),
                                      coords.expand(num_q, -1, -1)).squeeze(1)
            gt_points = pred.masks.new_zeros((num_gt, self.num_match_points))
            valid_masks = target.masks[valid].unsqueeze(1).float()
            gt_points[valid] = point_sample(valid_masks,
                                            coords.expand(valid_masks.shape[0], -1,
                                                          -1)).squeeze(1)
            gt.masks = gt_points
        assign_result = self.assigner.assign(pred, gt, img_meta=dict(img_meta, img_shape=(H, W)))
        query_idx = torch.nonzero(assign_result.gt_inds > 0, as_tuple=False).squeeze(1)
        gt_idx = assign_result.gt_inds[query_idx] - 1
        return query_idx.to(device), gt_idx.to(device)

    def match(self, pred_logits: Tensor, pred_boxes: Tensor, pred_masks: Optional[Tensor],
              gt_instances: InstanceData, img_meta: dict) -> MatchIndices:
        """Match one image's predictions to its ground truth, blind to query type.

        Args:
            pred_logits: Class logits [Q, K] (sigmoid space, query . text).
            pred_boxes: Boxes [Q, 4], cxcywh normalised by ``img_meta['batch_input_shape']``.
            pred_masks: Mask logits [Q, h, w] at 1/4 of the batch frame, or None.
            gt_instances: Ground truth as in docs/data_contract.md (``labels``, ``bboxes`` xyxy
                pixels, ``masks``, ``mask_valid``).
            img_meta: Needs ``batch_input_shape``.

        Returns:
            tuple[Tensor, Tensor]: ``query_idx`` [M] and ``gt_idx`` [M], M = min(Q, N).
        """
        target = prepare_gt_targets(gt_instances, img_meta, pred_logits.device)
        self._check_labels(target, pred_logits.shape[-1], None, img_meta)
        return self._match_prepared(pred_logits, pred_boxes, pred_masks, target, img_meta)

    def _match_level(self, level: dict, targets: List[InstanceData],
                     batch_img_metas: List[dict]) -> List[MatchIndices]:
        """Match every image of one prediction level."""
        logits, boxes = level['pred_logits'], level['pred_boxes']
        masks = level.get('pred_masks')
        return [
            self._match_prepared(logits[b], boxes[b], None if masks is None else masks[b],
                                 targets[b], batch_img_metas[b]) for b in range(len(targets))
        ]

    # ------------------------------------------------------------------ losses

    def _level_losses(self, level: dict, targets: List[InstanceData],
                      indices: Sequence[MatchIndices], text_valid: Optional[Tensor],
                      num_gt: float, num_masks: float, prefix: str) -> Dict[str, Tensor]:
        """Losses of one prediction level given its query-to-gt indices.

        Args:
            level: ``pred_logits`` [B, Q, K], ``pred_boxes`` [B, Q, 4] normalised cxcywh,
                optional ``pred_masks`` [B, Q, h, w] logits.
            targets: Prepared gt per image (see ``prepare_gt_targets``).
            indices: Per image, ``(query_idx [M_b], gt_idx [M_b])``.
            text_valid: [B, K] bool or None; False entries get no class loss.
            num_gt: Normaliser of the class and box losses.
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

        # boxes: L1 on normalised cxcywh + GIoU (paper eq. 1, L_b)
        if query_idx.numel() > 0:
            src_boxes = boxes[batch_idx, query_idx]
            tgt_boxes = torch.cat([t.norm_bboxes[g] for t, (_, g) in zip(targets, indices)])
            losses['loss_bbox'] = self.loss_bbox(src_boxes, tgt_boxes, avg_factor=num_gt)
            losses['loss_iou'] = self.loss_iou(
                bbox_cxcywh_to_xyxy(src_boxes), bbox_cxcywh_to_xyxy(tgt_boxes),
                avg_factor=num_gt)
        else:
            losses['loss_bbox'] = boxes.sum() * 0.0
            losses['loss_iou'] = boxes.sum() * 0.0

        # masks: BCE + dice on importance-sampled points, gt with a mask only (paper eq. 1, L_m)
        if masks is not None:
            losses.update(self._mask_losses(masks, targets, indices, batch_idx, query_idx,
                                            num_masks))
        return {prefix + k: v for k, v in losses.items()}

    def _mask_losses(self, masks: Tensor, targets: List[InstanceData],
                     indices: Sequence[MatchIndices], batch_idx: Tensor, query_idx: Tensor,
                     num_masks: float) -> Dict[str, Tensor]:
        """BCE and dice on PointRend-style importance-sampled points (mmdet Mask2Former).

        Args:
            masks: Mask logits [B, Q, h, w].
            targets: Prepared gt per image.
            indices: Per image ``(query_idx, gt_idx)``.
            batch_idx: [M] image of each matched pair (concatenated ``indices``).
            query_idx: [M] query of each matched pair.
            num_masks: Normaliser (number of gt masks).

        Returns:
            dict[str, Tensor]: ``loss_mask`` and ``loss_dice``; exactly 0 (still in the graph)
            when no matched gt has a mask.
        """
        valid = torch.cat([t.mask_valid[g] for t, (_, g) in zip(targets, indices)])
        if not bool(valid.any()):
            zero = masks.sum() * 0.0
            return {'loss_mask': zero, 'loss_dice': zero.clone()}
        src = masks[batch_idx[valid], query_idx[valid]].unsqueeze(1)  # [M, 1, h, w]
        tgt = torch.cat([
            t.masks[g[t.mask_valid[g]]] for t, (_, g) in zip(targets, indices)
        ]).unsqueeze(1).to(src.dtype)  # [M, 1, H, W]
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src.detach(), None, self.num_points, self.oversample_ratio,
                self.importance_sample_ratio)  # [M, P, 2]
            tgt_points = point_sample(tgt, coords).squeeze(1)  # [M, P]
        src_points = point_sample(src, coords).squeeze(1)  # [M, P]
        return {
            'loss_mask':
            self.loss_mask(src_points.reshape(-1), tgt_points.reshape(-1),
                           avg_factor=num_masks * self.num_points),
            'loss_dice':
            self.loss_dice(src_points, tgt_points, avg_factor=num_masks),
        }

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
                ``masks`` (BitmapMasks or Tensor [N, H, W]), ``mask_valid`` [N].
            batch_img_metas: Per image meta with ``batch_input_shape``.

        Returns:
            dict[str, Tensor]: The losses (see the class docstring for the keys).
        """
        logits = outputs['pred_logits']
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
        targets = [
            prepare_gt_targets(gt, meta, device)
            for gt, meta in zip(batch_gt_instances, batch_img_metas)
        ]
        for b, target in enumerate(targets):
            self._check_labels(target, K, None if text_valid is None else text_valid[b],
                               batch_img_metas[b])
        num_gt = self._avg_count(sum(len(t) for t in targets), device)
        num_masks = self._avg_count(sum(int(t.mask_valid.sum()) for t in targets), device)

        losses: Dict[str, Tensor] = {}
        indices = self._match_level(outputs, targets, batch_img_metas)
        losses.update(
            self._level_losses(outputs, targets, indices, text_valid, num_gt, num_masks, ''))
        if outputs.get('query_types') is not None:
            losses['matched_conditional_frac'] = self._conditional_frac(
                outputs['query_types'], indices, B, device)
        for i, aux in enumerate(outputs.get('aux_outputs') or []):
            aux_indices = self._match_level(aux, targets, batch_img_metas)
            losses.update(
                self._level_losses(aux, targets, aux_indices, aux.get('text_valid', text_valid),
                                   num_gt, num_masks, f'd{i}.'))
        enc = outputs.get('enc_outputs')
        if enc is not None:
            enc_indices = self._match_level(enc, targets, batch_img_metas)
            losses.update(
                self._level_losses(enc, targets, enc_indices, enc.get('text_valid', text_valid),
                                   num_gt, num_masks, 'enc.'))
        dn_outputs, dn_meta = outputs.get('dn_outputs'), outputs.get('dn_meta')
        if dn_outputs is not None and dn_meta is not None:
            losses.update(self._dn_losses(dn_outputs, dn_meta, targets, text_valid))
        return losses

    def _dn_losses(self, dn_outputs: dict, dn_meta: dict, targets: List[InstanceData],
                   text_valid: Optional[Tensor]) -> Dict[str, Tensor]:
        """Denoising losses (Mask DINO): each dn query reconstructs the gt ``dn_meta`` names.

        Args:
            dn_outputs: ``pred_logits`` [B, D, K], ``pred_boxes`` [B, D, 4], optional
                ``pred_masks`` [B, D, h, w], ``aux_outputs`` (list of the same).
            dn_meta: ``dn_query_idx`` and ``dn_gt_idx``: per image, long tensors [M_b] (dn
                queries with a target and the gt index each reconstructs). Other dn queries are
                class negatives.
            targets: Prepared gt per image.
            text_valid: [B, K] bool or None.

        Returns:
            dict[str, Tensor]: ``dn.loss_*`` and ``dn.d{i}.loss_*``, normalised by the number of
            dn queries with a target (mask terms: those whose gt has a mask).
        """
        device = dn_outputs['pred_logits'].device
        num_dn_queries = dn_outputs['pred_logits'].shape[1]
        q_list, g_list = dn_meta.get('dn_query_idx'), dn_meta.get('dn_gt_idx')
        if q_list is None or g_list is None or len(q_list) != len(targets) or len(
                g_list) != len(targets):
            raise ValueError('dn_meta needs "dn_query_idx" and "dn_gt_idx": one tensor per image '
                             f'({len(targets)} images)')
        indices = []
        for b, (q, g) in enumerate(zip(q_list, g_list)):
            q = torch.as_tensor(q, device=device).long().reshape(-1)
            g = torch.as_tensor(g, device=device).long().reshape(-1)
            if q.numel() != g.numel():
                raise ValueError(f'dn_meta of image {b}: dn_query_idx has {q.numel()} entries but '
                                 f'dn_gt_idx {g.numel()}')
            if q.numel() and (int(q.max()) >= num_dn_queries or int(q.min()) < 0):
                raise ValueError(f'dn_meta of image {b}: dn_query_idx out of range '
                                 f'[0, {num_dn_queries})')
            if g.numel() and (int(g.max()) >= len(targets[b]) or int(g.min()) < 0):
                raise ValueError(f'dn_meta of image {b}: dn_gt_idx out of range '
                                 f'[0, {len(targets[b])}) (number of gt)')
            indices.append((q, g))
        num_dn = self._avg_count(sum(q.numel() for q, _ in indices), device)
        num_dn_masks = self._avg_count(
            sum(int(t.mask_valid[g].sum()) for t, (_, g) in zip(targets, indices)), device)
        losses = self._level_losses(dn_outputs, targets, indices,
                                    dn_outputs.get('text_valid', text_valid), num_dn,
                                    num_dn_masks, 'dn.')
        for i, aux in enumerate(dn_outputs.get('aux_outputs') or []):
            losses.update(
                self._level_losses(aux, targets, indices, aux.get('text_valid', text_valid),
                                   num_dn, num_dn_masks, f'dn.d{i}.'))
        return losses

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
