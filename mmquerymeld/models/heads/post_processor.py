"""Task post-processing of QueryMeldNet as one registered, swappable module.

The fusion-head idea of mmdet's ``MaskFormerFusionHead``: the head predicts per-query class
logits, mask logits and boxes; this module turns one image's final-layer predictions into the
data-sample fields of the image's task (docs/data_contract.md, "Predictions"). It owns the frame
conversion (1/4-resolution padded frame -> ``img_shape`` / ``ori_shape``) and the per-task
selection (the pure functions of :mod:`mmquerymeld.models.heads.postprocessing`), so that a
memory-bounded variant (select first, upsample only what is kept) is a change of this module
only.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import OptConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor

from mmquerymeld.utils import TASKS
from .postprocessing import postprocess_by_task


@MODELS.register_module()
class QueryMeldPostProcessor(BaseModule):
    """Per-task post-processing of the final decoder layer's predictions.

    For each image: frame conversion (:meth:`to_image_frame`), removal of the padded vocabulary
    columns, then the task's function of :mod:`~mmquerymeld.models.heads.postprocessing`
    (``metainfo['task']``) with the keyword arguments ``test_cfg[task]``.

    Args:
        test_cfg: Per-task keyword arguments of the post-processing functions, e.g.
            ``dict(panoptic=dict(object_mask_thr=0.25, iou_thr=0.8),
            instance=dict(max_per_image=100))``; keys must be tasks of
            ``mmquerymeld.utils.TASKS``. The head builds this module from its own ``test_cfg``
            by default, so a model-level ``test_cfg`` keeps its meaning.
        init_cfg: Unused (no parameters), kept for the mmengine signature.
    """

    def __init__(self, test_cfg: OptConfigType = None, init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        test_cfg = dict(test_cfg) if test_cfg else {}
        unknown = sorted(set(test_cfg) - set(TASKS))
        if unknown:
            raise ValueError(f'QueryMeldPostProcessor: test_cfg has keys {unknown} that are not '
                             f'tasks; expected per-task keyword arguments for {TASKS}')
        self.test_cfg = test_cfg

    def task_cfg(self, task: str) -> Dict[str, object]:
        """Keyword arguments of ``task``'s post-processing function (a copy of
        ``test_cfg[task]``, empty when not configured)."""
        return dict(self.test_cfg.get(task) or {})

    @staticmethod
    def to_image_frame(mask_logits: Tensor, boxes: Tensor, img_meta: dict,
                       rescale: bool = True) -> Tuple[Tensor, Tensor]:
        """Bring 1/4-resolution masks and normalised boxes to the output frame.

        The masks are upsampled to the padded batch frame, the padding is cropped to
        ``img_shape``, then (``rescale``) resized to ``ori_shape``; boxes are scaled likewise
        (divided by ``scale_factor``) and clamped to the output frame.

        Args:
            mask_logits: ``[Q, h, w]`` on the padded frame at 1/4 resolution.
            boxes: ``[Q, 4]`` normalised cxcywh of the padded frame.
            img_meta: Image meta (``batch_input_shape``, ``img_shape``, ``ori_shape``,
                ``scale_factor``).
            rescale: Target ``ori_shape`` (True) or ``img_shape``.

        Returns:
            tuple: mask logits ``[Q, H, W]`` and xyxy pixel boxes ``[Q, 4]`` of the target frame.
        """
        pad_h, pad_w = img_meta['batch_input_shape'][:2]
        img_h, img_w = img_meta['img_shape'][:2]
        masks = F.interpolate(mask_logits[None], size=(pad_h, pad_w), mode='bilinear',
                              align_corners=False)[0, :, :img_h, :img_w]
        boxes = bbox_cxcywh_to_xyxy(boxes) * boxes.new_tensor([pad_w, pad_h, pad_w, pad_h])
        out_h, out_w = img_h, img_w
        if rescale:
            out_h, out_w = img_meta['ori_shape'][:2]
            masks = F.interpolate(masks[None], size=(out_h, out_w), mode='bilinear',
                                  align_corners=False)[0]
            sf = img_meta.get('scale_factor', (1.0, 1.0))
            boxes = boxes / boxes.new_tensor([sf[0], sf[1], sf[0], sf[1]])
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, out_w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, out_h)
        return masks, boxes

    def predict_single(self, cls_logits: Tensor, mask_logits: Tensor, boxes: Tensor,
                       img_meta: dict, query_types: Optional[Tensor] = None,
                       rescale: bool = True) -> Dict[str, object]:
        """Post-process one image for its task.

        Args:
            cls_logits: ``[Q, Kmax]`` class logits (columns beyond the image's texts are
                padding and are dropped).
            mask_logits: ``[Q, h, w]`` at 1/4 of the padded frame.
            boxes: ``[Q, 4]`` normalised cxcywh of the padded frame.
            img_meta: Image meta with ``texts``, ``task`` and the frame keys of
                :meth:`to_image_frame` (``thing_flags`` for panoptic).
            query_types: ``[Q]`` long (``mmquerymeld.utils.QUERY_TYPES``), or None.
            rescale: Results at ``ori_shape`` (True) or ``img_shape``.

        Returns:
            dict: the data-sample fields of the task (``pred_sem_seg``, ``pred_instances``,
            ``pred_panoptic_seg``).
        """
        task = img_meta['task']
        num_texts = len(img_meta['texts'])
        masks, boxes_xyxy = self.to_image_frame(mask_logits, boxes, img_meta, rescale)
        return postprocess_by_task(task, cls_logits[:, :num_texts], masks, boxes_xyxy,
                                   query_types, thing_flags=img_meta.get('thing_flags', None),
                                   **self.task_cfg(task))

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

    forward = predict
