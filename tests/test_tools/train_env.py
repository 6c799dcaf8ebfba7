"""Environment of the ``tools/train.py`` subprocesses the tool tests start (one place)."""
import os
import os.path as osp
from typing import Dict

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: Folders on the subprocesses' PYTHONPATH: the repo, test-only hooks (tests/data, this folder).
PROBE_DIRS = (osp.join(REPO, 'tests', 'data'), osp.join(REPO, 'tests', 'test_tools'))


def train_env(cpu_only: bool = False) -> Dict[str, str]:
    """``os.environ`` plus the repo and the probe folders on ``PYTHONPATH``, one OMP thread.

    Args:
        cpu_only: Hide GPUs (``CUDA_VISIBLE_DEVICES=''``), e.g. to test the CPU bf16 path.

    Returns:
        The environment for ``subprocess``; torch's ``weights_only`` opt-out is removed so the
        subprocess loads checkpoints under torch's default.
    """
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([REPO, *PROBE_DIRS, env.get('PYTHONPATH', '')])
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    env.setdefault('OMP_NUM_THREADS', '1')
    if cpu_only:
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env
