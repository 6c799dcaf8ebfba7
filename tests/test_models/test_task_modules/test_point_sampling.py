"""Ground-truth point sampling without per-match mask copies equals mmcv's ``point_sample``."""
import torch
from mmcv.ops import point_sample

from mmquerymeld.models.task_modules import sample_mask_points, sample_shared_points


def test_sample_mask_points_equals_point_sample_on_copies():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 37, 53, generator=g) > 0.6  # odd sizes: no symmetry hides an x/y swap
    rows = torch.tensor([3, 0, 3, 4, 1, 3])  # repeated rows: denoising copies of one target
    coords = torch.rand(6, 400, 2, generator=g)
    coords[0, :8] = torch.tensor([[0., 0.], [1., 1.], [0., 1.], [1., 0.], [0.005, 0.5],
                                  [0.995, 0.5], [0.5, 0.001], [0.5, 0.999]])  # borders: padding
    expected = point_sample(masks[rows, None].float(), coords).squeeze(1)
    got = sample_mask_points(masks, rows, coords)
    assert got.shape == (6, 400) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert 0 < float(got.mean()) < 1


def test_sample_mask_points_no_rows():
    out = sample_mask_points(torch.zeros(2, 8, 8, dtype=torch.bool), torch.zeros(0).long(),
                             torch.zeros(0, 16, 2))
    assert out.shape == (0, 16)


def test_sample_mask_points_never_allocates_a_mask():
    """No op allocates as much as one float mask: the gt is read in place, whatever M is."""
    from torch.profiler import ProfilerActivity, profile
    masks = torch.zeros(2, 512, 512, dtype=torch.bool)
    masks[0, 100:300, 50:400] = True
    rows, coords = torch.zeros(64).long(), torch.rand(64, 100, 2)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = sample_mask_points(masks, rows, coords)
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < biggest < 512 * 512  # bytes; a float copy of one mask is 4x that
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        expected = point_sample(masks[rows, None].float(), coords).squeeze(1)
    assert max(e.cpu_memory_usage for e in prof.events()) >= 64 * 512 * 512  # the copies
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_sample_shared_points_equals_expanded_grid():
    g = torch.Generator().manual_seed(1)
    masks = torch.randn(7, 20, 30, generator=g)
    coords = torch.rand(50, 2, generator=g)
    expected = point_sample(masks[:, None], coords[None].expand(7, -1, -1)).squeeze(1)
    torch.testing.assert_close(sample_shared_points(masks, coords), expected, atol=1e-6,
                               rtol=0)
