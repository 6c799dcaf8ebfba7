"""NonFiniteLossHook's counting rules (end to end: tests/test_tools/test_train_nonfinite.py)."""
from types import SimpleNamespace

import pytest
import torch

from mmquerymeld.engine.hooks import NonFiniteLossError, NonFiniteLossHook
from mmquerymeld.engine.nonfinite import SKIPPED_KEY


def _outputs(loss: float, skipped: bool) -> dict:
    return {'loss': torch.tensor(loss), 'loss_dice': torch.tensor(loss),
            'loss_cls': torch.tensor(1.0), SKIPPED_KEY: torch.tensor(float(skipped))}


def _step(hook, k, outputs):
    hook.after_train_iter(SimpleNamespace(iter=k - 1, model=None), k - 1, {}, outputs)


def test_finite_steps_reset_the_count_scaler_skips_included():
    """A step the fp16 GradScaler skipped has a finite loss: it is not counted and it breaks a
    run of non-finite ones."""
    hook = NonFiniteLossHook(max_consecutive_nonfinite=2)
    _step(hook, 1, _outputs(float('nan'), True))
    _step(hook, 2, _outputs(3.0, False))  # e.g. GradScaler found Inf gradients: not ours
    _step(hook, 3, _outputs(float('inf'), True))
    assert hook.consecutive == 1 and hook.total_skipped == 2
    with pytest.raises(NonFiniteLossError, match='2 consecutive training steps'):
        _step(hook, 4, _outputs(float('nan'), True))


def test_nonfinite_terms_are_dropped_from_the_logged_outputs():
    hook = NonFiniteLossHook()
    out = _outputs(float('nan'), True)
    _step(hook, 1, out)
    assert set(out) == {'loss_cls', SKIPPED_KEY}


def test_a_model_that_stepped_on_a_nan_stops_the_run():
    hook = NonFiniteLossHook()
    out = _outputs(float('nan'), True)
    out.pop(SKIPPED_KEY)  # e.g. a model without QueryMeldNet's train_step
    with pytest.raises(NonFiniteLossError, match='did not skip the optimizer step'):
        _step(hook, 1, out)


def test_bad_limit():
    with pytest.raises(ValueError, match='max_consecutive_nonfinite'):
        NonFiniteLossHook(max_consecutive_nonfinite=0)
