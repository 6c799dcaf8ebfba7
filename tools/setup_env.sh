#!/usr/bin/env bash
# Idempotent environment set-up for mmquerymeld.
#
# Creates a virtual environment inside the repository (.venv, or $MMQM_VENV), installs the
# registry's CUDA-enabled torch 2.13.0 + torchvision 0.28.0 (never a local "+cpu" wheel, which
# breaks `import torchvision`), setuptools<82, builds mmcv 2.1.0 with its ops from source
# (CPU ops here, CUDA ops too on a machine with a visible GPU), installs mmengine / mmdet /
# mmsegmentation / mmpretrain / open_clip_torch and this package in editable mode.
#
# A second run finishes in seconds: a stamp records a hash of the inputs of the set-up, and an
# import check confirms the environment still works before anything is skipped.
#
# Usage: bash tools/setup_env.sh          (prints the venv's python path on the last line)
# Env:   MMQM_VENV        venv location (default: <repo>/.venv)
#        MMQM_PYTHON      python used to create the venv (default: python3)
#        MMQM_TORCH_SPEC  torch requirement (default: torch==2.13.0,!=2.13.0+cpu)
#        MMQM_TV_SPEC     torchvision requirement (default: torchvision==0.28.0)
#        MAX_JOBS         parallel compile jobs for mmcv (default: number of cores)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMQM_VENV:-$REPO/.venv}"
PY_BOOT="${MMQM_PYTHON:-python3}"
TORCH_SPEC="${MMQM_TORCH_SPEC:-torch==2.13.0,!=2.13.0+cpu}"
TV_SPEC="${MMQM_TV_SPEC:-torchvision==0.28.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { echo "[setup_env] $*" >&2; }

stamp_inputs() {
  {
    echo "$TORCH_SPEC|$TV_SPEC"
    cat "$REPO"/requirements/*.txt "$REPO/setup.py" "$REPO/tools/setup_env.sh"
  } | sha256sum | cut -d' ' -f1
}

check_env() {
  "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import mmcv, mmengine, mmdet, mmseg, mmpretrain, open_clip, torchvision, pycocotools  # noqa
from mmcv.ops import MultiScaleDeformableAttention  # noqa: needs the compiled ops
assert mmcv.__version__ == '2.1.0', mmcv.__version__
import mmquerymeld, os  # noqa
# the editable install's mim links (setup.py); `git clean -xdf` removes them
assert os.path.isfile(os.path.join(os.path.dirname(mmquerymeld.__file__), '.mim', 'tools', 'train.py'))
PY
}

STAMP="$VENV/.mmqm_setup_stamp"
WANT="$(stamp_inputs)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && check_env; then
  log "environment up to date: $VENV"
  echo "$VENV/bin/python"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PY_BOOT" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip >&2
# torch depends on setuptools; the constraints keep it below 82 (mmcv's setup.py needs pkg_resources)
"${PIP[@]}" install -q -c "$REPO/requirements/pins.txt" "setuptools<82" wheel ninja psutil >&2

log "installing $TORCH_SPEC $TV_SPEC (large download on the first run)"
"${PIP[@]}" install -q -c "$REPO/requirements/pins.txt" "$TORCH_SPEC" "$TV_SPEC" >&2
"$VENV/bin/python" -c "import torchvision.ops" || {
  log "ERROR: torchvision does not import against the installed torch (a '+cpu' torch wheel?)."
  exit 1
}

"${PIP[@]}" install -q -c "$REPO/requirements/pins.txt" mmengine >&2

if ! "$VENV/bin/python" -c "import mmcv; assert mmcv.__version__=='2.1.0'; from mmcv.ops import MultiScaleDeformableAttention" >/dev/null 2>&1; then
  log "building mmcv 2.1.0 with ops from source (about 8 minutes on 2 cores; cached afterwards)"
  "${PIP[@]}" install -q -c "$REPO/requirements/pins.txt" "mmcv==2.1.0" --no-build-isolation >&2
fi

log "installing mmdet / mmsegmentation / mmpretrain / open_clip_torch and mmquerymeld (editable)"
# ranges from mminstall.txt / runtime.txt / tests.txt, exact versions from the constraints
"${PIP[@]}" install -q -c "$REPO/requirements/pins.txt" -r "$REPO/requirements/mminstall.txt" \
  -r "$REPO/requirements/runtime.txt" -r "$REPO/requirements/tests.txt" \
  -r "$REPO/requirements/annotation.txt" >&2
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$REPO" >&2

if ! check_env; then
  log "ERROR: the environment does not import; run: $VENV/bin/python -c 'import mmquerymeld'"
  exit 1
fi
echo "$WANT" > "$STAMP"
log "environment ready: $VENV"
echo "$VENV/bin/python"
