"""Test-only: ``tools/dataset_converters/box2mask.py`` with a pause after each image's masks
(before its journal line), so that a test can SIGKILL it between images.

Usage: ``python box2mask_probe.py <box2mask arguments>``; the pause is ``BOX2MASK_PROBE_SLEEP``
seconds (default 0.5).
"""
import os
import os.path as osp
import runpy
import sys
import time

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
TOOL = osp.join(REPO, 'tools', 'dataset_converters', 'box2mask.py')
sys.path.insert(0, REPO)

from mmquerymeld.annotation import box2mask as module  # noqa: E402

_call = module.Box2MaskProcess.__call__


def _slow_call(self, job, rgb):
    out = _call(self, job, rgb)
    time.sleep(float(os.environ.get('BOX2MASK_PROBE_SLEEP', '0.5')))
    return out


module.Box2MaskProcess.__call__ = _slow_call
sys.argv = [TOOL] + sys.argv[1:]
runpy.run_path(TOOL, run_name='__main__')
