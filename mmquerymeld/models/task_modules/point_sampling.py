"""Point sampling of ground-truth masks without copying them per matched query.

Mask2Former / Mask DINO evaluate mask costs and losses on sampled points (PointRend). mmcv's
``point_sample`` needs a float ``[M, 1, H, W]`` input, one row per matched query: gathering the
ground-truth masks that way copies a full-resolution float mask for every match — with mask
denoising (several noised copies of every target) and 1024² inputs, about 1 GB per prediction
level. The same values can be read from the bool masks as they are, at the sampled points only.
"""
import torch
from torch import Tensor


def sample_mask_points(masks: Tensor, rows: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample bool masks at normalised points, as ``point_sample`` would.

    Equal (up to float rounding) to
    ``mmcv.ops.point_sample(masks[rows, None].float(), coords).squeeze(1)``: ``grid_sample`` with
    ``align_corners=False`` and zero padding, i.e. the pixel position of ``c`` is
    ``c * size - 0.5`` and neighbours outside the mask count as 0. Memory is ``O(M * P)``,
    independent of the mask size.

    Args:
        masks: ``[N, H, W]`` bool (or 0/1) masks.
        rows: ``[M]`` long, the mask each point set reads.
        coords: ``[M, P, 2]`` points ``(x, y)`` in ``[0, 1]`` (normalised by width, height).

    Returns:
        Tensor: ``[M, P]`` sampled values in ``[0, 1]``, in ``coords``' floating dtype.
    """
    num, height, width = masks.shape
    if rows.numel() == 0:
        return coords.new_zeros(coords.shape[:2])
    flat = masks.reshape(num, height * width)
    x = coords[..., 0] * width - 0.5
    y = coords[..., 1] * height - 0.5
    x0, y0 = x.floor(), y.floor()
    wx1, wy1 = x - x0, y - y0
    x0, y0 = x0.long(), y0.long()
    row_idx = rows[:, None].expand_as(x0)
    out = coords.new_zeros(coords.shape[:2])
    for dy, wy in ((0, 1 - wy1), (1, wy1)):  # the four bilinear neighbours
        yi = y0 + dy
        for dx, wx in ((0, 1 - wx1), (1, wx1)):
            xi = x0 + dx
            inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
            pixel = yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)
            hit = flat[row_idx, pixel].bool() & inside
            out += hit.to(out.dtype) * (wx * wy)
    return out


def sample_shared_points(masks: Tensor, coords: Tensor) -> Tensor:
    """Sample float masks ``[Q, h, w]`` at the same points ``[P, 2]`` -> ``[Q, P]``.

    The queries are ``grid_sample``'s channels, so the sampling grid is not repeated per query
    (``point_sample(masks[:, None], coords.expand(Q, P, 2))`` builds ``[Q, P, 2]`` grids).
    """
    from mmcv.ops import point_sample
    return point_sample(masks[None], coords[None])[0]
