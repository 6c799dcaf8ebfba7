"""Turn one image's unified (text, box, mask) ground truth into the tensors the criterion uses.

Paper section 3.3: every sample is a list of (text, box, mask) triplets; ``mask_valid`` says
whether the mask is annotated (False for box-only detection data). See docs/data_contract.md.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmdet.structures.mask import BaseInstanceMasks


def _where(img_meta: dict) -> str:
    """Name the sample in error messages (its image file when known)."""
    return str(img_meta.get('img_path', img_meta.get('img_id', '<unknown image>')))


def batch_shape(img_meta: dict) -> Tuple[int, int]:
    """Return the (H, W) that normalises boxes: ``batch_input_shape``, else ``pad_shape`` /
    ``img_shape``.

    Args:
        img_meta: The image's meta information.

    Returns:
        tuple[int, int]: (H, W).
    """
    for key in ('batch_input_shape', 'pad_shape', 'img_shape'):
        if key in img_meta:
            shape = img_meta[key]
            return int(shape[0]), int(shape[1])
    raise KeyError(f'{_where(img_meta)}: img_meta has no "batch_input_shape" (nor pad_shape / '
                   'img_shape) to normalise boxes and masks with')


def masks_to_tensor(masks, num: int, shape: Tuple[int, int], img_meta: dict,
                    device: torch.device) -> Tensor:
    """Convert gt masks to a bool tensor padded (bottom / right) to the batch frame.

    Args:
        masks: mmdet ``BitmapMasks`` / ``PolygonMasks`` or a bool / uint8 tensor [N, h, w] with
            h <= H and w <= W.
        num: Expected number of masks N (the number of gt instances).
        shape: The batch frame (H, W).
        img_meta: Meta information, only for error messages.
        device: Target device.

    Returns:
        Tensor: Bool masks [N, H, W].
    """
    if isinstance(masks, BaseInstanceMasks):
        tensor = masks.to_tensor(dtype=torch.bool, device=device)
    elif isinstance(masks, Tensor):
        tensor = masks.to(device=device).bool()
    else:
        raise TypeError(f'{_where(img_meta)}: gt_instances.masks must be mmdet BitmapMasks / '
                        f'PolygonMasks or a Tensor [N, H, W], got {type(masks).__name__}')
    if tensor.dim() != 3 or tensor.shape[0] != num:
        raise ValueError(f'{_where(img_meta)}: gt_instances.masks has shape '
                         f'{tuple(tensor.shape)}, expected [{num}, H, W] (one per instance)')
    h, w = tensor.shape[-2:]
    H, W = shape
    if h > H or w > W:
        raise ValueError(f'{_where(img_meta)}: gt_instances.masks are {h}x{w}, larger than the '
                         f'batch frame {H}x{W} (img_meta["batch_input_shape"])')
    if (h, w) != (H, W):
        tensor = F.pad(tensor, (0, W - w, 0, H - h), value=False)
    return tensor


def prepare_gt_targets(gt_instances: InstanceData, img_meta: dict,
                       device: Optional[torch.device] = None) -> InstanceData:
    """Validate and normalise one image's ground truth for matching and losses.

    Args:
        gt_instances: ``labels`` [N] (index into the vocabulary), ``bboxes`` [N, 4] xyxy pixels
            in the batch frame (Tensor or mmdet box type), optional ``masks`` (see
            :func:`masks_to_tensor`) and optional ``mask_valid`` [N] bool. Missing ``mask_valid``
            means every instance with a mask is valid; missing ``masks`` means box-only.
        img_meta: Needs ``batch_input_shape`` (H, W).
        device: Device of the outputs; defaults to the labels' device.

    Returns:
        InstanceData: ``labels`` [N] long, ``bboxes`` [N, 4] float xyxy pixels, ``norm_bboxes``
        [N, 4] cxcywh normalised by (W, H, W, H), ``masks`` [N, H, W] bool at the batch frame
        (all False where no mask), ``mask_valid`` [N] bool.
    """
    where = _where(img_meta)
    for field in ('labels', 'bboxes'):
        if field not in gt_instances:
            raise KeyError(f'{where}: gt_instances lacks the field "{field}"')
    labels = gt_instances.labels
    if not isinstance(labels, Tensor) or labels.dim() != 1:
        raise ValueError(f'{where}: gt_instances.labels must be a 1-D Tensor, got '
                         f'{getattr(labels, "shape", type(labels))}')
    device = device if device is not None else labels.device
    num = labels.numel()
    bboxes = gt_instances.bboxes
    bboxes = getattr(bboxes, 'tensor', bboxes)  # mmdet HorizontalBoxes -> Tensor
    if not isinstance(bboxes, Tensor) or tuple(bboxes.shape) != (num, 4):
        raise ValueError(f'{where}: gt_instances.bboxes must be a Tensor [{num}, 4] xyxy, got '
                         f'{tuple(getattr(bboxes, "shape", ()))}')
    H, W = batch_shape(img_meta)
    bboxes = bboxes.to(device=device, dtype=torch.float32)
    factor = bboxes.new_tensor([W, H, W, H])
    if 'masks' in gt_instances:
        masks = masks_to_tensor(gt_instances.masks, num, (H, W), img_meta, device)
        has_mask = True
    else:
        masks = torch.zeros((num, H, W), dtype=torch.bool, device=device)
        has_mask = False
    if 'mask_valid' in gt_instances:
        mask_valid = torch.as_tensor(gt_instances.mask_valid, device=device).bool()
        if tuple(mask_valid.shape) != (num, ):
            raise ValueError(f'{where}: gt_instances.mask_valid has shape '
                             f'{tuple(mask_valid.shape)}, expected [{num}]')
        if not has_mask and bool(mask_valid.any()):
            raise ValueError(f'{where}: gt_instances.mask_valid is True for some instance but '
                             'gt_instances has no "masks"')
    else:
        mask_valid = torch.full((num, ), has_mask, dtype=torch.bool, device=device)
    return InstanceData(
        labels=labels.to(device=device, dtype=torch.long),
        bboxes=bboxes,
        norm_bboxes=bbox_xyxy_to_cxcywh(bboxes) / factor,
        masks=masks,
        mask_valid=mask_valid)
