"""fp16 AmpOptimWrapper on CUDA: the loss scaler's own skipped steps are not non-finite losses.

Needs a GPU (mmengine's AmpOptimWrapper refuses to build without one); CPU machines skip it.
The same steps ran as a standalone script (mmengine + this module only) on an H200 (torch 2.11,
2026-11-30): the step with a finite loss and overflowing scaled gradients left the weights as
they were and halved the scale (65536 -> 32768) with ``nonfinite_skipped`` 0; the NaN step was
skipped before the scaler (scale unchanged).
"""
import pytest
import torch
from mmengine.optim import AmpOptimWrapper
from torch import nn

from mmquerymeld.engine.nonfinite import SKIPPED_KEY, guarded_update

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 GradScaler: CUDA')


def _step(wrapper, model, make_loss):
    with wrapper.optim_context(model):
        loss = make_loss(model(torch.ones(2, 4, device='cuda')))
    return loss, guarded_update(loss, {'loss': loss.detach()}, wrapper)


def test_scaler_skips_are_not_counted_and_nan_skips_leave_the_scale():
    model = nn.Linear(4, 1).cuda()
    wrapper = AmpOptimWrapper(optimizer=torch.optim.AdamW(model.parameters(), lr=0.1),
                              loss_scale='dynamic')
    w0, s0 = model.weight.detach().clone(), wrapper.loss_scaler.get_scale()
    # a finite fp32 loss whose scaled fp16 gradients overflow: the GradScaler's business
    loss, out = _step(wrapper, model, lambda y: y.float().sum() * 1e35)
    assert torch.isfinite(loss) and float(out[SKIPPED_KEY]) == 0
    assert torch.equal(w0, model.weight) and wrapper.loss_scaler.get_scale() < s0
    _, out = _step(wrapper, model, lambda y: y.float().pow(2).sum())
    assert float(out[SKIPPED_KEY]) == 0 and not torch.equal(w0, model.weight)
    w2, s2 = model.weight.detach().clone(), wrapper.loss_scaler.get_scale()
    _, out = _step(wrapper, model, lambda y: y.float().sum() * float('nan'))
    assert float(out[SKIPPED_KEY]) == 1 and torch.equal(w2, model.weight)
    assert wrapper.loss_scaler.get_scale() == s2  # no backward, no scaler update
