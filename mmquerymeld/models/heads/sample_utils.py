"""What the head reads from the data samples: vocabulary and task, padding ratios, the batch's
ground-truth targets (prepared once, ``task_modules.gt_targets``)."""
from typing import List, Optional, Tuple

import torch
from mmdet.structures import SampleList
from torch import Tensor

from mmquerymeld.models.task_modules import GtTargets, prepare_batch_gt_targets
from mmquerymeld.utils import TASKS


def check_sample(sample, index: int) -> Tuple[List[str], str]:
    """Return ``(texts, task)`` of a data sample, or raise an error that names the field.

    Args:
        sample: A ``DetDataSample`` after the data preprocessor.
        index: Its position in the batch (for the message).

    Returns:
        tuple: the vocabulary ``metainfo['texts']`` and ``metainfo['task']``.
    """
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


def image_valid_ratios(batch_data_samples: SampleList, device: torch.device) -> Tensor:
    """Fraction of the padded batch frame covered by each image.

    Returns:
        Tensor: ``[B, 2]`` ``(img_w / pad_w, img_h / pad_h)`` (1 where ``img_shape`` is missing).
    """
    ratios = []
    for sample in batch_data_samples:
        meta = sample.metainfo
        pad_h, pad_w = meta['batch_input_shape'][:2]
        img_h, img_w = meta.get('img_shape', (pad_h, pad_w))[:2]
        ratios.append((min(img_w / pad_w, 1.0), min(img_h / pad_h, 1.0)))
    return torch.tensor(ratios, dtype=torch.float32, device=device)


def unpack_gt_instances(batch_data_samples: SampleList) -> Tuple[list, List[dict]]:
    """Ground truth and metas of a training batch (mmdet's ``unpack_gt_instances``, checked).

    Returns:
        tuple: ``batch_gt_instances`` (``labels``, ``bboxes``, ``masks``, ``mask_valid``) and
        ``batch_img_metas``.

    Raises:
        ValueError: a sample's ``gt_instances`` lacks ``mask_valid``.
    """
    batch_gt_instances, batch_img_metas = [], []
    for i, sample in enumerate(batch_data_samples):
        gt = sample.gt_instances
        if 'mask_valid' not in gt:
            raise ValueError(f'QueryMeldHead.loss: data sample {i}: gt_instances.mask_valid is '
                             'missing (see docs/data_contract.md; PackQueryMeldInputs sets it)')
        batch_gt_instances.append(gt)
        batch_img_metas.append(sample.metainfo)
    return batch_gt_instances, batch_img_metas


def prepare_training_targets(criterion: Optional[object], batch_data_samples: SampleList,
                             device: torch.device) -> Tuple[List[GtTargets], List[dict]]:
    """The batch's ground truth, prepared once for denoising, matching and the losses.

    Args:
        criterion: The head's criterion (its ``prepare_targets`` applies its
            ``box_supervision``), or None (defaults of ``prepare_batch_gt_targets``).
        batch_data_samples: Training data samples (``gt_instances`` with ``mask_valid``).
        device: Device of the targets.

    Returns:
        tuple: ``GtTargets`` per image (normalised, clamped boxes; valid masks; flags) and the
        images' metas.
    """
    batch_gt_instances, batch_img_metas = unpack_gt_instances(batch_data_samples)
    prepare = criterion.prepare_targets if criterion is not None else prepare_batch_gt_targets
    return prepare(batch_gt_instances, batch_img_metas, device), batch_img_metas
