"""Ground-truth targets of a training batch, prepared once and shared by denoising, matching and
the losses.

Paper section 3.3: every sample is a list of (text, box, mask) triplets; ``mask_valid`` says
whether the mask is annotated (False for box-only detection data), ``box_valid`` whether the box
is supervised (False for semantic-task targets, one mask per class whose box is the union of
scattered regions, and for panoptic stuff: Mask DINO's ``loss_boxes_panoptic`` and matcher).
See docs/data_contract.md.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.structures.bbox import bbox_xyxy_to_cxcywh
from mmdet.structures.mask import BaseInstanceMasks

#: ``box_supervision`` policies: ``'things'`` (Mask DINO: no box loss / cost for semantic-task
#: targets and panoptic stuff) and ``'all'`` (every target's box is supervised).
BOX_SUPERVISION = ('things', 'all')


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


class GtTargets(InstanceData):
    """One image's prepared ground truth (:func:`prepare_gt_targets`).

    Data fields (one entry per target, N): ``labels`` long, ``bboxes`` float xyxy pixels of the
    batch frame, clamped to it, ``norm_bboxes`` the same boxes as cxcywh normalised by
    ``(W, H, W, H)``, ``mask_valid`` bool, ``box_valid`` bool and ``mask_rows`` long (row of the
    target in ``valid_masks``, -1 without a mask).

    ``valid_masks`` (a metainfo field, not per target): bool ``[Nv, H, W]`` at the batch frame,
    the masks of the mask-valid targets only, in target order; box-only targets cost no pixels.
    Indexing a ``GtTargets`` keeps ``valid_masks`` whole and ``mask_rows`` pointing into it.
    """

    def gather_masks(self, gt_idx: Tensor) -> Tensor:
        """Masks of the targets ``gt_idx`` (all mask-valid) -> bool ``[len(gt_idx), H, W]``."""
        return self.valid_masks[self.mask_rows[gt_idx]]

    def to(self, *args, **kwargs) -> 'GtTargets':
        """Move the data fields and ``valid_masks``."""
        moved = super().to(*args, **kwargs)
        moved.set_field(self.valid_masks.to(*args, **kwargs), 'valid_masks',
                        field_type='metainfo')
        return moved


def gt_box_valid(labels: Tensor, img_meta: dict, box_supervision: str = 'things') -> Tensor:
    """Which targets get box supervision (box loss and box matching cost).

    Args:
        labels: ``[N]`` long, index into ``img_meta['texts']``.
        img_meta: ``task`` and, for panoptic samples, ``thing_flags`` (one per text).
        box_supervision: ``'things'``: False for every target of a semantic sample and for the
            stuff targets of a panoptic sample (Mask DINO); ``'all'``: True everywhere.

    Returns:
        Tensor: ``[N]`` bool on the labels' device.
    """
    if box_supervision not in BOX_SUPERVISION:
        raise ValueError(f'box_supervision must be one of {BOX_SUPERVISION}, got '
                         f'{box_supervision!r}')
    valid = torch.ones(labels.shape, dtype=torch.bool, device=labels.device)
    if box_supervision == 'all':
        return valid
    task = img_meta.get('task')
    if task == 'semantic':
        return ~valid
    flags = img_meta.get('thing_flags')
    if task == 'panoptic' and flags is not None and labels.numel():
        flags = torch.as_tensor(list(flags), dtype=torch.bool, device=labels.device)
        if int(labels.min()) < 0 or int(labels.max()) >= len(flags):
            raise ValueError(f'{_where(img_meta)}: gt_instances.labels {labels.tolist()} index '
                             f'outside metainfo["thing_flags"] ({len(flags)} texts)')
        valid = flags[labels]
    return valid


def _flag(gt_instances: InstanceData, field: str, num: int, default: bool, where: str,
          device: torch.device) -> Tensor:
    """A per-target bool field of ``gt_instances`` ([N]), or ``default`` everywhere."""
    if field not in gt_instances:
        return torch.full((num, ), default, dtype=torch.bool, device=device)
    flag = torch.as_tensor(gt_instances.get(field), device=device).bool()
    if tuple(flag.shape) != (num, ):
        raise ValueError(f'{where}: gt_instances.{field} has shape {tuple(flag.shape)}, '
                         f'expected [{num}]')
    return flag


def _valid_masks(masks, mask_valid: Tensor, num: int, shape: Tuple[int, int], img_meta: dict,
                 device: torch.device) -> Tensor:
    """The mask-valid targets' masks only, bool ``[Nv, H, W]`` at the batch frame."""
    where = _where(img_meta)
    if not isinstance(masks, (BaseInstanceMasks, Tensor)):
        raise TypeError(f'{where}: gt_instances.masks must be mmdet BitmapMasks / '
                        f'PolygonMasks or a Tensor [N, H, W], got {type(masks).__name__}')
    if len(masks) != num:
        raise ValueError(f'{where}: gt_instances.masks has {len(masks)} masks '
                         f'{tuple(getattr(masks, "shape", ()))}, expected [{num}, H, W] '
                         '(one per instance)')
    idx = torch.nonzero(mask_valid, as_tuple=False).squeeze(1)
    if idx.numel() == 0:  # box-only image: no pixel is read or made
        return torch.zeros((0, *shape), dtype=torch.bool, device=device)
    if idx.numel() < num:  # gather first: box-only rows are never converted
        masks = masks[idx.cpu().numpy()] if isinstance(masks, BaseInstanceMasks) else \
            masks[idx.to(masks.device)]
    return masks_to_tensor(masks, idx.numel(), shape, img_meta, device)


def prepare_gt_targets(gt_instances: InstanceData, img_meta: dict,
                       device: Optional[torch.device] = None,
                       box_supervision: str = 'things') -> GtTargets:
    """Validate and normalise one image's ground truth for denoising, matching and losses.

    The one place where boxes are normalised: clamped to the batch frame in xyxy pixels, then
    converted to cxcywh / (W, H, W, H); ``bboxes`` and ``norm_bboxes`` are the same clamped box.

    Args:
        gt_instances: ``labels`` [N] (index into the vocabulary), ``bboxes`` [N, 4] xyxy pixels
            in the batch frame (Tensor or mmdet box type), optional ``masks`` (see
            :func:`masks_to_tensor`; only the ``mask_valid`` rows are read), optional
            ``mask_valid`` [N] bool (missing: every instance valid when ``masks`` exist) and
            optional ``box_valid`` [N] bool (missing: :func:`gt_box_valid`).
        img_meta: Needs ``batch_input_shape`` (H, W); ``task`` / ``thing_flags`` for
            ``box_valid``.
        device: Device of the outputs; defaults to the labels' device.
        box_supervision: See :func:`gt_box_valid`.

    Returns:
        GtTargets: ``labels``, ``bboxes``, ``norm_bboxes``, ``mask_valid``, ``box_valid``,
        ``mask_rows`` and ``valid_masks`` (see :class:`GtTargets`).
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
    factor = torch.tensor([W, H, W, H], dtype=torch.float32, device=device)
    # the single clamp: a box partly outside the frame is its visible part, everywhere
    bboxes = torch.minimum(bboxes.to(device=device, dtype=torch.float32).clamp(min=0), factor)
    has_mask = 'masks' in gt_instances
    mask_valid = _flag(gt_instances, 'mask_valid', num, has_mask, where, device)
    if not has_mask and bool(mask_valid.any()):
        raise ValueError(f'{where}: gt_instances.mask_valid is True for some instance but '
                         'gt_instances has no "masks"')
    if has_mask:
        valid_masks = _valid_masks(gt_instances.masks, mask_valid, num, (H, W), img_meta, device)
    else:
        valid_masks = torch.zeros((0, H, W), dtype=torch.bool, device=device)
    labels = labels.to(device=device, dtype=torch.long)
    box_valid = _flag(gt_instances, 'box_valid', num, True, where, device) \
        if 'box_valid' in gt_instances else gt_box_valid(labels, img_meta, box_supervision)
    mask_rows = torch.where(mask_valid, torch.cumsum(mask_valid.long(), 0) - 1,
                            torch.full_like(labels, -1))
    targets = GtTargets(
        labels=labels,
        bboxes=bboxes,
        norm_bboxes=bbox_xyxy_to_cxcywh(bboxes) / factor,
        mask_valid=mask_valid,
        box_valid=box_valid,
        mask_rows=mask_rows)
    targets.set_field(valid_masks, 'valid_masks', field_type='metainfo')  # no deep copy
    return targets


def prepare_batch_gt_targets(batch_gt_instances: Sequence[InstanceData],
                             batch_img_metas: Sequence[dict],
                             device: Optional[torch.device] = None,
                             box_supervision: str = 'things') -> List[GtTargets]:
    """:func:`prepare_gt_targets` for every image of a batch; already prepared targets
    (:class:`GtTargets`) are passed through, so the batch is prepared once however many
    consumers (denoising, matching, losses) ask.

    Args:
        batch_gt_instances: Per image raw ``gt_instances`` or :class:`GtTargets`.
        batch_img_metas: Per image meta (``batch_input_shape``, ``task``, ``thing_flags``).
        device: Device of the outputs.
        box_supervision: See :func:`gt_box_valid`.

    Returns:
        list[GtTargets]: one per image.
    """
    if len(batch_gt_instances) != len(batch_img_metas):
        raise ValueError(f'{len(batch_gt_instances)} gt_instances but {len(batch_img_metas)} '
                         'img_metas')
    return [
        gt if isinstance(gt, GtTargets) else
        prepare_gt_targets(gt, meta, device, box_supervision)
        for gt, meta in zip(batch_gt_instances, batch_img_metas)
    ]
