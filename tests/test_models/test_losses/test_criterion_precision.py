"""Under autocast the criterion matches and computes its losses in fp32 (issue 9, item 1)."""
import torch

from mmquerymeld.models.losses import QueryMeldCriterion
from mmquerymeld.utils import to_fp32

from test_querymeld_criterion import batch_outputs, meta, two_object_gt


class _DtypeSpy:
    """Stands in for one match cost of the assigner and records its output."""

    def __init__(self, cost, seen: list) -> None:
        self.cost, self.seen = cost, seen

    def __call__(self, *args, **kwargs):
        out = self.cost(*args, **kwargs)
        self.seen.append(out.detach().clone())
        return out


def _record_costs(criterion: QueryMeldCriterion) -> list:
    """Wrap every match cost of the criterion's assigner; return the list of their outputs."""
    seen: list = []
    costs = criterion.assigner.match_costs
    costs[:] = [_DtypeSpy(cost, seen) for cost in costs]
    return seen


def _losses(criterion, autocast: bool) -> dict:
    torch.manual_seed(0)  # the mask losses sample points at random
    outputs = batch_outputs({0: (0, 0), 3: (2, 1)})
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        return criterion(outputs, [two_object_gt()], [meta()])


def test_costs_and_losses_are_fp32_under_bf16_autocast():
    """Same fp32 inputs with and without bf16 autocast: the same cost matrices and losses.

    A cost computed in bf16 (8 bits of mantissa) and cast back differs by ~1e-2 relative; the
    tolerances below are fp32 summation-order level.
    """
    criterion = QueryMeldCriterion(num_points=256)
    seen = _record_costs(criterion)
    plain = _losses(criterion, autocast=False)
    plain_costs = list(seen)
    seen.clear()
    mixed = _losses(criterion, autocast=True)
    assert len(seen) == len(plain_costs) > 0
    for got, want in zip(seen, plain_costs):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert plain.keys() == mixed.keys()
    for key, value in mixed.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, plain[key], rtol=1e-5, atol=1e-6, msg=key)


def test_to_fp32_casts_reduced_precision_only():
    nested = dict(a=torch.ones(2, dtype=torch.bfloat16), b=[torch.ones(1, dtype=torch.float16),
                                                            torch.ones(1, dtype=torch.long)],
                  c=(torch.ones(1, dtype=torch.float64), 'text'))
    out = to_fp32(nested)
    assert out['a'].dtype == torch.float32 and out['b'][0].dtype == torch.float32
    assert out['b'][1].dtype == torch.long and out['c'][0].dtype == torch.float64
    assert out['c'][1] == 'text'
