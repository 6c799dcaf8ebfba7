"""``BoxOnlyMasks``: the ``gt_masks`` of a sample whose instances have boxes but no masks.

Box-only sources (Objects365, detection and box-caption data) have no mask to store, yet mmdet's
transforms (Resize, RandomFlip, RandomCrop, Pad, ...), ``PackDetInputs`` and
``DetDataPreprocessor(pad_mask=True)`` expect ``gt_masks`` of one entry per instance that follow
the image's geometry, and a batch that mixes box-only and masked samples must pad every sample's
``gt_instances.masks`` alike. This placeholder is a ``BitmapMasks`` of ``N`` masks that holds no
pixels: every geometric operation only updates its ``(height, width)``, so a 300-box 1024x1024
sample costs its boxes, not 300 MB of zeros, through the workers, the collate and the data
preprocessor. ``gt_instances.mask_valid`` is False for all of its rows (docs/data_contract.md);
the model never reads their pixels.

Readers that still want an array get a zero-stride read-only view (``masks``, ``to_ndarray``,
``to_tensor``): the right shape and values, no memory.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import mmcv
import numpy as np
import torch
from mmdet.structures.mask import BitmapMasks


class BoxOnlyMasks(BitmapMasks):
    """``num`` all-empty masks of ``height x width`` that store no pixels.

    Args:
        num: N, the number of (box-only) instances.
        height: H of the frame the masks would have.
        width: W of the frame.
    """

    def __init__(self, num: int, height: int, width: int) -> None:  # no super(): no pixels
        if num < 0:
            raise ValueError(f'BoxOnlyMasks: num must be >= 0, got {num}')
        self.num = int(num)
        self.height = int(height)
        self.width = int(width)

    # ------------------------------------------------------------------ views
    @property
    def masks(self) -> np.ndarray:  # type: ignore[override]
        """Read-only uint8 zeros ``[N, H, W]`` with zero strides (no memory)."""
        return np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (self.num, self.height, self.width))

    def to_ndarray(self) -> np.ndarray:
        """See :attr:`masks`."""
        return self.masks

    def to_tensor(self, dtype: torch.dtype, device) -> torch.Tensor:
        """Zeros ``[N, H, W]`` as an expanded (zero-stride) tensor: no memory."""
        return torch.zeros((1, 1, 1), dtype=dtype, device=device).expand(
            self.num, self.height, self.width)

    @property
    def areas(self) -> np.ndarray:
        """All zero: ``[N]``."""
        return np.zeros(self.num, dtype=np.int64)

    def get_bboxes(self, dst_type='hbb'):
        """Empty masks have no extent: zero boxes ``[N, 4]`` (as ``BitmapMasks``)."""
        return _zero_boxes(self.num, dst_type)

    # ------------------------------------------------------------------ indexing
    def __len__(self) -> int:
        return self.num

    def __iter__(self):
        return iter(self.masks)

    def __getitem__(self, index) -> 'BoxOnlyMasks':
        """Select instances (int, slice, index array or bool array)."""
        return BoxOnlyMasks(len(np.arange(self.num)[index].reshape(-1)), self.height, self.width)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_masks={self.num}, height={self.height}, '
                f'width={self.width})')

    @classmethod
    def cat(cls, masks: Sequence[BitmapMasks]) -> BitmapMasks:
        """Concatenate; stays a placeholder only when every part is one."""
        if masks and all(isinstance(m, BoxOnlyMasks) for m in masks):
            return cls(sum(len(m) for m in masks), masks[0].height, masks[0].width)
        return BitmapMasks.cat([
            BitmapMasks(np.zeros((len(m), m.height, m.width), np.uint8), m.height, m.width)
            if isinstance(m, BoxOnlyMasks) else m for m in masks
        ])

    # ------------------------------------------------------------------ geometry: shape only
    def _with_shape(self, height: int, width: int) -> 'BoxOnlyMasks':
        return BoxOnlyMasks(self.num, int(height), int(width))

    def rescale(self, scale, interpolation='nearest') -> 'BoxOnlyMasks':
        new_w, new_h = mmcv.rescale_size((self.width, self.height), scale)
        return self._with_shape(new_h, new_w)

    def resize(self, out_shape: Tuple[int, int], interpolation='nearest') -> 'BoxOnlyMasks':
        return self._with_shape(*out_shape)

    def flip(self, flip_direction='horizontal') -> 'BoxOnlyMasks':
        assert flip_direction in ('horizontal', 'vertical', 'diagonal')
        return self._with_shape(self.height, self.width)

    def pad(self, out_shape: Tuple[int, int], pad_val=0) -> 'BoxOnlyMasks':
        return self._with_shape(*out_shape)

    def crop(self, bbox: np.ndarray) -> 'BoxOnlyMasks':
        bbox = np.asarray(bbox).copy()
        bbox[0::2] = np.clip(bbox[0::2], 0, self.width)
        bbox[1::2] = np.clip(bbox[1::2], 0, self.height)
        x1, y1, x2, y2 = bbox
        return self._with_shape(max(y2 - y1, 1), max(x2 - x1, 1))

    def crop_and_resize(self, bboxes, out_shape, inds, device='cpu', interpolation='bilinear',
                        binarize=True) -> 'BoxOnlyMasks':
        return BoxOnlyMasks(len(bboxes), *out_shape)

    def expand(self, expanded_h, expanded_w, top, left) -> 'BoxOnlyMasks':
        return self._with_shape(expanded_h, expanded_w)

    def translate(self, out_shape, offset, direction='horizontal', border_value=0,
                  interpolation='bilinear') -> 'BoxOnlyMasks':
        return self._with_shape(*out_shape)

    def shear(self, out_shape, magnitude, direction='horizontal', border_value=0,
              interpolation='bilinear') -> 'BoxOnlyMasks':
        return self._with_shape(*out_shape)

    def rotate(self, out_shape, angle, center=None, scale=1.0, border_value=0,
               interpolation='bilinear') -> 'BoxOnlyMasks':
        return self._with_shape(*out_shape)


def _zero_boxes(num: int, dst_type: str):
    """``num`` zero boxes of mmdet's box type ``dst_type`` (as ``get_bboxes`` of empty masks)."""
    from mmdet.structures.bbox import get_box_type
    _, box_type_cls = get_box_type(dst_type)
    return box_type_cls(torch.zeros((num, 4), dtype=torch.float32))
