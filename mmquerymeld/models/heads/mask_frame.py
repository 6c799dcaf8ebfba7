"""The one way mask logits reach the output frame: on demand, for the queries and rows asked for.

The head predicts mask logits ``[Q, h, w]`` at 1/4 of the padded batch frame. Today's frame
conversion (and Mask2Former's / Mask DINO's inference) upsamples all of them bilinearly to the
padded frame, crops the padding (``img_shape``) and resizes to ``ori_shape``; at a 2560x3072
original that is ~12.6 GB for Q = 400 before a task keeps anything. :class:`MaskFrame` computes
the same two bilinear resizes (``align_corners=False``, PyTorch's source-index convention)
separably: along the height composed into one 4-tap map, along the width with
``F.interpolate``; so any subset of queries and any band of output rows is produced alone: tasks select first and upsample only what they keep, and per-pixel
decisions (semantic, panoptic) walk the output in row bands whose size an element budget fixes.
"""
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['MaskFrame', 'bilinear_taps']


def bilinear_taps(in_size: int, out_size: int) -> Tuple[Tensor, Tensor]:
    """Source indices and weights of a 1-D bilinear resize (``align_corners=False``).

    PyTorch's ``upsample_bilinear2d`` convention: ``src = (dst + 0.5) * in / out - 0.5``
    clamped at 0, ``i0 = floor(src)`` (at most ``in - 1``), ``i1 = min(i0 + 1, in - 1)``.

    Args:
        in_size: Input length.
        out_size: Output length.

    Returns:
        tuple: ``index`` ``[out, 2]`` long and ``weight`` ``[out, 2]`` float64.
    """
    dst = torch.arange(out_size, dtype=torch.float64)
    src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    lam = (src - i0).clamp(0, 1)
    return torch.stack([i0, i1], 1), torch.stack([1 - lam, lam], 1)


def _composed_taps(low: int, pad: int, img: int, out: int) -> Tuple[Tensor, Tensor]:
    """Taps of ``low -> pad`` (bilinear), crop to ``img``, then ``img -> out`` (bilinear).

    Returns:
        tuple: ``index`` ``[out, 4]`` long into ``low`` and ``weight`` ``[out, 4]`` float64.
    """
    idx1, w1 = bilinear_taps(low, pad)
    idx1, w1 = idx1[:img], w1[:img]
    if out == img:  # F.interpolate to the same size is the identity
        return idx1, w1
    idx2, w2 = bilinear_taps(img, out)
    index = idx1[idx2].flatten(1)  # [out, 2 (step 2), 2 (step 1)] -> [out, 4]
    weight = (w2[:, :, None] * w1[idx2]).flatten(1)
    return index, weight


class MaskFrame:
    """Upsampling of ``[N, h, w]`` mask logits to the output frame, by rows and by queries.

    Equals ``F.interpolate(x, (pad_h, pad_w), 'bilinear')[..., :img_h, :img_w]`` followed (when
    the output differs from ``img_shape``) by ``F.interpolate(., (out_h, out_w), 'bilinear')``
    within float32 rounding of the composed weights (~1e-6 relative; tested).

    Args:
        low_shape: ``(h, w)`` of the mask logits (1/4 of the padded frame).
        pad_shape: ``(pad_h, pad_w)``, ``batch_input_shape``.
        img_shape: ``(img_h, img_w)``: the image inside the padded frame.
        out_shape: ``(out_h, out_w)``: ``ori_shape`` (rescale) or ``img_shape``.
        max_elements: Element budget of one working tensor: :meth:`row_bands` and
            :meth:`query_chunks` size bands / chunks so that ``N x rows x out_w`` stays under it
            (at least one row / query).
    """

    def __init__(self, low_shape: Sequence[int], pad_shape: Sequence[int],
                 img_shape: Sequence[int], out_shape: Sequence[int],
                 max_elements: int = 2**24) -> None:
        (h, w), (pad_h, pad_w) = low_shape[:2], pad_shape[:2]
        (img_h, img_w), (out_h, out_w) = img_shape[:2], out_shape[:2]
        if not (0 < img_h <= pad_h and 0 < img_w <= pad_w):
            raise ValueError(f'MaskFrame: img_shape {(img_h, img_w)} must lie inside the padded '
                             f'frame batch_input_shape {(pad_h, pad_w)}')
        if int(max_elements) < 1:
            raise ValueError(f'MaskFrame: max_elements must be >= 1, got {max_elements}')
        self.low_shape = (int(h), int(w))
        self.out_shape = (int(out_h), int(out_w))
        self.max_elements = int(max_elements)
        self._row_idx, self._row_w = _composed_taps(h, pad_h, img_h, out_h)
        self._col_sizes = (int(pad_w), int(img_w), int(out_w))
        self._identity = (h, w) == (pad_h, pad_w) == (img_h, img_w) == (out_h, out_w)

    @classmethod
    def from_meta(cls, low_shape: Sequence[int], img_meta: dict, rescale: bool = True,
                  max_elements: int = 2**24) -> 'MaskFrame':
        """The frame of one image (``batch_input_shape``, ``img_shape``, ``ori_shape``)."""
        for key in ('batch_input_shape', 'img_shape') + (('ori_shape', ) if rescale else ()):
            if key not in img_meta:
                raise ValueError(f"MaskFrame: img_meta['{key}'] is missing (set by the data "
                                 'pipeline / preprocessor)')
        out = img_meta['ori_shape'] if rescale else img_meta['img_shape']
        return cls(low_shape, img_meta['batch_input_shape'], img_meta['img_shape'], out,
                   max_elements)

    @classmethod
    def identity(cls, shape: Sequence[int], max_elements: int = 2**24) -> 'MaskFrame':
        """Masks already in the output frame (``[N, H, W]`` in, the same out)."""
        return cls(shape, shape, shape, shape, max_elements)

    def upsample(self, mask_logits: Tensor, rows: Optional[Tuple[int, int]] = None) -> Tensor:
        """Output-frame mask logits of the given masks, all rows or rows ``[y0, y1)``.

        Args:
            mask_logits: ``[N, h, w]``.
            rows: ``(y0, y1)`` output rows, or None for all.

        Returns:
            Tensor: ``[N, y1 - y0, out_w]`` in the input's dtype and device.
        """
        if mask_logits.dim() != 3 or tuple(mask_logits.shape[1:]) != self.low_shape:
            raise ValueError(f'MaskFrame.upsample: mask_logits must be [N, {self.low_shape[0]}, '
                             f'{self.low_shape[1]}], got {tuple(mask_logits.shape)}')
        y0, y1 = rows if rows is not None else (0, self.out_shape[0])
        if not 0 <= y0 <= y1 <= self.out_shape[0]:
            raise ValueError(f'MaskFrame.upsample: rows {rows} outside [0, {self.out_shape[0]}]')
        if self._identity:
            return mask_logits[:, y0:y1]
        return self._columns(self._rows(mask_logits, y0, y1))

    def _rows(self, x: Tensor, y0: int, y1: int) -> Tensor:
        """Output rows ``[y0, y1)`` from the low-resolution rows: ``[N, h, w] -> [N, b, w]``,
        ``out[:, j] = sum_t weight[j, t] * x[:, index[j, t]]`` (the composed 4-tap map)."""
        index = self._row_idx[y0:y1].to(x.device)
        weight = self._row_w[y0:y1].to(device=x.device, dtype=x.dtype)
        out = None
        for t in range(index.shape[1]):
            term = x.index_select(1, index[:, t]) * weight[:, t].view(1, -1, 1)
            out = term if out is None else out.add_(term)
        return out

    def _columns(self, x: Tensor) -> Tensor:
        """All output columns of a band: ``[N, b, w] -> [N, b, out_w]``, the two steps along
        the width with ``F.interpolate`` (linear, the 1-D case of the bilinear resize)."""
        pad_w, img_w, out_w = self._col_sizes
        if x.shape[-1] != pad_w:
            x = F.interpolate(x, size=pad_w, mode='linear', align_corners=False)
        x = x[..., :img_w]
        if out_w != img_w:
            x = F.interpolate(x, size=out_w, mode='linear', align_corners=False)
        return x

    def row_bands(self, num_masks: int) -> Iterator[Tuple[int, int]]:
        """Output row bands ``(y0, y1)`` covering the frame, each with at most
        ``max_elements // (num_masks x out_w)`` rows (at least one)."""
        out_h, out_w = self.out_shape
        step = max(1, self.max_elements // max(1, num_masks * out_w))
        for y0 in range(0, out_h, step):
            yield y0, min(out_h, y0 + step)

    def query_chunks(self, num_masks: int) -> Iterator[slice]:
        """Slices over ``num_masks`` masks with at most ``max_elements // (out_h x out_w)``
        masks each (at least one): full-resolution logits of one chunk fit the budget."""
        step = max(1, self.max_elements // max(1, self.out_shape[0] * self.out_shape[1]))
        for start in range(0, num_masks, step):
            yield slice(start, min(num_masks, start + step))
