"""``AtomicCheckpointHook``: checkpoints a killed run can always resume from."""
import glob
import os
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmdet.registry import HOOKS
from mmquerymeld.utils.atomic import TMP_MARKER, atomic_write

from ..atomic_backend import AtomicLocalBackend  # noqa: F401  (registers 'atomic_local')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's :class:`CheckpointHook` with kill-safe writes (the default of every config).

    mmengine 0.10.7 (1) writes ``iter_N.pth`` in place, so a SIGKILL mid-write leaves a truncated
    file under the final name, (2) writes ``last_checkpoint`` in place too, and (3) deletes the
    oldest kept checkpoint *before* writing the new one, so with ``max_keep_ckpts=1`` a kill during
    the write leaves ``last_checkpoint`` naming a deleted file. Here, for local work dirs:

    1. checkpoints go through the ``atomic_local`` file backend (temporary file + fsync + rename,
       :mod:`mmquerymeld.utils.atomic`);
    2. ``last_checkpoint`` is written atomically and only after the checkpoint is complete;
    3. outdated checkpoints are removed only after both, so ``last_checkpoint`` always names a
       complete file;
    4. temporary files left by a killed write (``.iter_N.pth.tmp-*``) are removed when a run
       starts; they are never read.

    Remote ``out_dir`` / explicit ``backend_args`` keep mmengine's behaviour.

    Args:
        **kwargs: Arguments of :class:`CheckpointHook`.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        out_dir = kwargs.get('out_dir')
        local = out_dir is None or '://' not in str(out_dir)
        self.atomic = (local and self.backend_args is None and self.file_client_args is None)
        if self.atomic:
            self.backend_args = dict(backend='atomic_local')

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.atomic and is_main_process():
            stale = glob.glob(osp.join(self.out_dir, f'.*{TMP_MARKER}*'))
            for path in stale:
                os.remove(path)
            if stale:
                print_log(f'Removed {len(stale)} partial checkpoint file(s) of an interrupted '
                          f'write: {", ".join(osp.basename(p) for p in stale)}',
                          logger='current')

    def _save_checkpoint_with_step(self, runner, step: int, meta: Optional[dict]) -> None:
        """Save ``step``'s checkpoint, then ``last_checkpoint``, then prune (see class doc)."""
        if not self.atomic:
            return super()._save_checkpoint_with_step(runner, step, meta)
        drop = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                drop = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args,
            save_optimizer=self.save_optimizer, save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if drop is not None and drop != step:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(drop))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
