"""Task post-processing of QueryMeldNet as one registered, swappable module.

The fusion-head idea of mmdet's ``MaskFormerFusionHead``: the head predicts per-query class
logits, mask logits and boxes; this module turns one image's final-layer predictions into the
data-sample fields of the image's task (docs/data_contract.md, "Predictions"). It owns the frame
conversion (1/4-resolution padded frame -> ``img_shape`` / ``ori_shape``: boxes here, masks
through the image's :class:`MaskFrame`, on demand) and the per-task selection (the pure
functions of :mod:`mmquerymeld.models.heads.postprocessing`), which select first and upsample
only what they keep; semantic and panoptic maps are formed in row bands.
"""
from typing import Dict, List, Optional, Sequence

import torch
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from mmquerymeld.utils import TASKS, to_fp32
from .mask_frame import MaskFrame
from .postprocessing import postprocess_by_task


@MODELS.register_module()
class QueryMeldPostProcessor(BaseModule):
    """Per-task post-processing of the final decoder layer's predictions.

    For each image: boxes to the output frame (:meth:`boxes_to_frame`), the image's
    :class:`MaskFrame` (:meth:`mask_frame`), removal of the padded vocabulary columns, then the
    task's function of :mod:`~mmquerymeld.models.heads.postprocessing` (``metainfo['task']``)
    with the keyword arguments ``test_cfg[task]``.

    Args:
        test_cfg: Per-task keyword arguments of the post-processing functions, e.g.
            ``dict(panoptic=dict(object_mask_thr=0.25, iou_thr=0.8, sharpen_temperature=0.06),
            instance=dict(max_per_image=100))``; keys must be tasks of
            ``mmquerymeld.utils.TASKS``. The head builds this module from its own ``test_cfg``
            by default, so a model-level ``test_cfg`` keeps its meaning.
        max_tile_elements: Element budget of one full-resolution working tensor (row band x
            masks, or a chunk of kept masks; at least one row / mask): 2**24 floats = 64 MB.
        init_cfg: Unused (no parameters), kept for the mmengine signature.
    """

    def __init__(self, test_cfg: OptConfigType = None, max_tile_elements: int = 2**24,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        test_cfg = dict(test_cfg) if test_cfg else {}
        unknown = sorted(set(test_cfg) - set(TASKS))
        if unknown:
            raise ValueError(f'QueryMeldPostProcessor: test_cfg has keys {unknown} that are not '
                             f'tasks; expected per-task keyword arguments for {TASKS}')
        if int(max_tile_elements) < 1:
            raise ValueError('QueryMeldPostProcessor: max_tile_elements must be >= 1, got '
                             f'{max_tile_elements}')
        self.test_cfg = test_cfg
        self.max_tile_elements = int(max_tile_elements)

    def task_cfg(self, task: str) -> Dict[str, object]:
        """Keyword arguments of ``task``'s post-processing function (a copy of
        ``test_cfg[task]``, empty when not configured)."""
        return dict(self.test_cfg.get(task) or {})

    def mask_frame(self, mask_logits: Tensor, img_meta: dict, rescale: bool = True) -> MaskFrame:
        """The image's frame: ``[Q, h, w]`` logits of the padded 1/4 frame -> the output frame
        (padding cropped to ``img_shape``, then resized to ``ori_shape`` when ``rescale``)."""
        return MaskFrame.from_meta(mask_logits.shape[-2:], img_meta, rescale,
                                   self.max_tile_elements)

    @staticmethod
    def boxes_to_frame(boxes: Tensor, img_meta: dict, rescale: bool = True) -> Tensor:
        """Normalised cxcywh boxes of the padded frame ``[Q, 4]`` -> xyxy pixels ``[Q, 4]`` of
        the output frame (divided by ``scale_factor`` when ``rescale``), clamped to it."""
        pad_h, pad_w = img_meta['batch_input_shape'][:2]
        boxes = bbox_cxcywh_to_xyxy(boxes) * boxes.new_tensor([pad_w, pad_h, pad_w, pad_h])
        out_h, out_w = img_meta['img_shape'][:2]
        if rescale:
            out_h, out_w = img_meta['ori_shape'][:2]
            sf = img_meta.get('scale_factor', (1.0, 1.0))
            boxes = boxes / boxes.new_tensor([sf[0], sf[1], sf[0], sf[1]])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, out_h)
        return boxes

    def predict_single(self, cls_logits: Tensor, mask_logits: Tensor, boxes: Tensor,
                       img_meta: dict, query_types: Optional[Tensor] = None,
                       rescale: bool = True) -> Dict[str, object]:
        """Post-process one image for its task.

        Args:
            cls_logits: ``[Q, Kmax]`` class logits (columns beyond the image's texts are
                padding and are dropped).
            mask_logits: ``[Q, h, w]`` at 1/4 of the padded frame.
            boxes: ``[Q, 4]`` normalised cxcywh of the padded frame.
            img_meta: Image meta with ``texts``, ``task``, ``batch_input_shape``,
                ``img_shape``, ``ori_shape``, ``scale_factor`` (``thing_flags`` for panoptic).
            query_types: ``[Q]`` long (``mmquerymeld.utils.QUERY_TYPES``), or None.
            rescale: Results at ``ori_shape`` (True) or ``img_shape``.

        Returns:
            dict: the data-sample fields of the task (``pred_sem_seg``, ``pred_instances``,
            ``pred_panoptic_seg``).
        """
        task = img_meta['task']
        num_texts = len(img_meta['texts'])
        return postprocess_by_task(
            task, cls_logits[:, :num_texts], mask_logits,
            self.boxes_to_frame(boxes, img_meta, rescale), query_types,
            thing_flags=img_meta.get('thing_flags', None),
            frame=self.mask_frame(mask_logits, img_meta, rescale), **self.task_cfg(task))

    def predict(self, cls_logits: Tensor, mask_logits: Tensor, boxes: Tensor,
                batch_img_metas: Sequence[dict], query_types: Optional[Tensor] = None,
                rescale: bool = True) -> List[Dict[str, object]]:
        """Post-process a batch, image by image (:meth:`predict_single`).

        Args:
            cls_logits: ``[B, Q, Kmax]``. mask_logits: ``[B, Q, h, w]``. boxes: ``[B, Q, 4]``
                normalised cxcywh of the padded frame.
            batch_img_metas: B image metas.
            query_types: ``[Q]`` long, shared by the batch, or None.
            rescale: See :meth:`predict_single`.

        Returns:
            list[dict]: per image, the data-sample fields of its task.
        """
        if not (cls_logits.shape[0] == mask_logits.shape[0] == boxes.shape[0] ==
                len(batch_img_metas)):
            raise ValueError('QueryMeldPostProcessor.predict: batch sizes differ: '
                             f'{cls_logits.shape[0]} logits, {mask_logits.shape[0]} masks, '
                             f'{boxes.shape[0]} boxes, {len(batch_img_metas)} metas')
        return [
            self.predict_single(cls_logits[b], mask_logits[b], boxes[b], meta, query_types,
                                rescale) for b, meta in enumerate(batch_img_metas)
        ]

    def predict_by_feat(self, all_layers_cls_scores: Sequence[Tensor],
                        all_layers_bbox_preds: Sequence[Tensor],
                        all_layers_mask_preds: Sequence[Tensor], batch_img_metas: List[dict],
                        query_types: Optional[Tensor] = None, rescale: bool = True,
                        num_dn: int = 0) -> List[Dict[str, object]]:
        """Post-process the head's per-level predictions: the last level, matching queries.

        Args:
            all_layers_cls_scores / all_layers_bbox_preds / all_layers_mask_preds: Per level
                ``[B, N, K]``, ``[B, N, 4]`` and ``[B, N, h, w]``; only the last is used.
            batch_img_metas: Per image meta (``texts``, ``task``, frame keys).
            query_types: ``[Q]`` long, or None.
            rescale: Results at ``ori_shape`` (True) or ``img_shape``.
            num_dn: Denoising queries in front of the matching queries (dropped).

        Returns:
            list[dict]: per image, the data-sample fields of its task.
        """
        # post-processing in fp32 whatever the model's precision (half-precision inference:
        # bf16 scores are quantised to ~3 significant digits and would reorder near-ties)
        cls_logits, masks, boxes = (to_fp32(level[-1][:, num_dn:]) for level in (
            all_layers_cls_scores, all_layers_mask_preds, all_layers_bbox_preds))
        with torch.autocast(device_type=masks.device.type, enabled=False):
            return self.predict(cls_logits, masks, boxes, batch_img_metas, query_types,
                                rescale=rescale)

    forward = predict
