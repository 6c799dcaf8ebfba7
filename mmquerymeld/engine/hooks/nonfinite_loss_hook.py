"""``NonFiniteLossHook``: report skipped non-finite steps, stop after N in a row."""
import math
from typing import Any, List, Optional

from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmdet.registry import HOOKS

from ..nonfinite import SKIPPED_KEY


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive training steps had a NaN / Inf loss."""


def _describe_samples(data_batch: Any) -> List[str]:
    """``source:img_id (img_path)`` of every sample of a loader batch."""
    samples = data_batch.get('data_samples', []) if isinstance(data_batch, dict) else []
    out = []
    for s in samples:
        meta = getattr(s, 'metainfo', {})
        out.append(f"{meta.get('source', '?')}:{meta.get('img_id', '?')} "
                   f"({meta.get('img_path', '?')})")
    return out


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Log every training step skipped for a NaN / Inf loss and stop after too many in a row.

    The model skips the optimizer step itself (``QueryMeldNet.train_step`` through
    :func:`mmquerymeld.engine.nonfinite.guarded_update`) and marks it ``nonfinite_skipped`` in
    its log variables. This hook (first of ``after_train_iter``) then logs, through mmengine's
    logger, the loss terms that went non-finite and the samples of the batch (source, image id,
    path), drops those terms from the iteration's outputs so the smoothed log is not NaN for a
    whole window, and raises :class:`NonFiniteLossError` after ``max_consecutive_nonfinite``
    skipped steps in a row: the run stops before a later checkpoint could hold anything but the
    last finite weights. Steps the fp16 loss scaler skips (finite loss, Inf gradients) are not
    counted. A model that reports non-finite losses without the marker did step on them: the
    hook stops the run at once.

    Args:
        max_consecutive_nonfinite: Skipped steps in a row that stop the run (>= 1).
    """

    priority = 'HIGHEST'

    def __init__(self, max_consecutive_nonfinite: int = 5) -> None:
        if int(max_consecutive_nonfinite) < 1:
            raise ValueError('NonFiniteLossHook: max_consecutive_nonfinite must be >= 1, got '
                             f'{max_consecutive_nonfinite}')
        self.max_consecutive = int(max_consecutive_nonfinite)
        self.consecutive = 0
        self.total_skipped = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs:
            return
        bad = [k for k, v in outputs.items() if 'loss' in k and not math.isfinite(float(v))]
        skipped = float(outputs.get(SKIPPED_KEY, 0)) > 0
        if bad and SKIPPED_KEY not in outputs:
            raise NonFiniteLossError(
                f'iteration {runner.iter + 1}: non-finite loss terms {bad} and the model '
                f'({type(runner.model).__name__}) did not skip the optimizer step; stopping '
                'before the weights are saved')
        if not skipped:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total_skipped += 1
        for k in bad:
            outputs.pop(k)
        print_log(f'Non-finite loss at iteration {runner.iter + 1}: skipped the optimizer step '
                  f'({self.consecutive} in a row, {self.total_skipped} in this run). '
                  f'Non-finite terms: {", ".join(bad) or "(on another rank)"}. '
                  f'Samples: {"; ".join(_describe_samples(data_batch))}',
                  logger='current', level=30)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f'{self.consecutive} consecutive training steps had a non-finite loss (limit '
                f'max_consecutive_nonfinite={self.max_consecutive}, last at iteration '
                f'{runner.iter + 1}; terms: {", ".join(bad)}); stopping the run. The last '
                'checkpoint holds the weights of the last finite step. Check the samples '
                'logged above (tools/misc/check_dataset.py) or lower the learning rate.')
