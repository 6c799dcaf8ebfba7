"""``import mmquerymeld`` loads the runtime only.

In a fresh interpreter, importing the package registers the modules a training run uses and
nothing else: no synthetic-world generator (``mmquerymeld.testing``), no test helpers, no optional
heavy library (annotation models, exporters, other metric libraries), which are imported lazily
where they are used.
"""
import json
import os.path as osp
import subprocess
import sys
from typing import List, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: The runtime subpackages (and modules) of mmquerymeld that ``import mmquerymeld`` may load.
RUNTIME = ('apis', 'datasets', 'engine', 'evaluation', 'models', 'utils', 'visualization',
           'version')
#: Top-level packages that ``import mmquerymeld`` must not load (beyond what its dependencies
#: load); import names (PySODMetrics installs ``py_sod_metrics``).
DENIED = ('matplotlib', 'py_sod_metrics', 'pysodmetrics', 'segment_anything', 'sam2',
          'transformers', 'onnx', 'onnxruntime', 'lvis', 'tests', 'conftest', 'pytest', '_pytest')
#: What mmquerymeld is built on; a denied package these load is theirs, not ours (mmdet 3.3's
#: ``mmdet.utils`` imports matplotlib at its top level, so every mmdet-based run loads it).
DEPENDENCIES = ('mmdet.datasets', 'mmdet.engine', 'mmdet.evaluation', 'mmdet.models',
                'mmdet.visualization', 'mmseg.datasets', 'mmseg.evaluation', 'mmcv.ops',
                'open_clip')


def loaded_modules(*steps: str) -> List[List[str]]:
    """``sys.modules`` after each step, run in order in one fresh interpreter (repo on sys.path).

    Args:
        steps: Python statements, one string per step.

    Returns:
        Per step, the sorted module names loaded so far.
    """
    lines = ['import json, sys']
    for step in steps:
        lines += [step, 'print(json.dumps(sorted(sys.modules)))']
    proc = subprocess.run([sys.executable, '-c', '\n'.join(lines)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    snapshots = [line for line in proc.stdout.splitlines() if line.startswith('["')]
    return [json.loads(line) for line in snapshots[-len(steps):]]


def outside_runtime(names: List[str]) -> List[str]:
    """mmquerymeld's own modules that are not in a :data:`RUNTIME` subpackage."""
    own = [n for n in names if n.startswith('mmquerymeld.')]
    return [n for n in own if n.split('.')[1] not in RUNTIME]


def denied(names: List[str]) -> List[str]:
    """The loaded modules that belong to a :data:`DENIED` package."""
    return [n for n in names if n.split('.')[0] in DENIED]


def violations(deps: List[str], names: List[str]) -> Tuple[List[str], List[str]]:
    """mmquerymeld's modules outside the runtime in ``names``, and the denied modules in
    ``names`` that the dependencies (``deps``: loaded after importing them alone) do not load."""
    return outside_runtime(names), sorted(set(denied(names)) - set(deps))


@pytest.fixture(scope='module')
def snapshots() -> List[List[str]]:
    """One fresh interpreter: the dependencies, then ``import mmquerymeld``, then stray imports."""
    return loaded_modules('\n'.join(f'import {m}' for m in DEPENDENCIES), 'import mmquerymeld',
                          'import mmquerymeld.testing\nimport pytest')


def test_import_loads_the_runtime_only(snapshots):
    deps, names, _ = snapshots
    assert 'mmquerymeld.models' in names and 'mmquerymeld.datasets' in names  # the probe works
    own, heavy = violations(deps, names)
    assert own == []
    assert heavy == []


def test_checks_catch_a_stray_import(snapshots):
    """The checks see the generator and a denied library when something does import them."""
    deps, _, names = snapshots
    own, heavy = violations(deps, names)
    assert 'mmquerymeld.testing' in own and 'mmquerymeld.testing.scenes' in own
    assert 'pytest' in heavy
