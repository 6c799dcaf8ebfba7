#!/usr/bin/env bash
# One prepared check of QueryMeldNet on a lent GPU machine (issue 9): install, mmcv's CUDA ops,
# deformable attention CUDA vs PyTorch, 50 training iterations of the R50 meld config with --amp
# on generated 1024² data (random init, no downloads), peak memory and iterations per second.
#
#   bash tools/analysis/gpu_check.sh --prepare   # here, with network: fill wheelhouse/ (~14 MB)
#   bash tools/analysis/gpu_check.sh             # there: the GPU machine (needs wheelhouse/)
#   bash tools/analysis/gpu_check.sh --dry-run   # any machine: same steps, tiny, CPU, no install
#   bash tools/analysis/gpu_check.sh --bench     # there: steps 1-2, then the side-by-side
#        benchmark against Mask2Former (tools/analysis/benchmark.py) at 1024² on the GPU: one
#        training step (BENCH_TRAIN_TIMEOUT, default 100 s) and predict of every task with an
#        80-text vocabulary plus semantic with 1203 texts, also for a 2560x3072 original
#        (BENCH_INFER_TIMEOUT, default 150 s); JSON and tables to $OUT (or $WORK/benchmark)
#
# The GPU machine (an H200 with CUDA 13, Python 3.12 and torch 2.11 preinstalled, no mmcv /
# mmdet, no network) receives the repository through the `device` tool; wheelhouse/ is git-
# ignored, so the call must carry it: run(command='bash tools/analysis/gpu_check.sh',
# carry=['wheelhouse'], timeout_s=600). The whole GPU run is bounded to ~9.5 minutes:
#   install ~0.5 min; mmcv 2.1.0 built from source with TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
#   FORCE_CUDA=1, time-boxed by MMCV_BUILD_TIMEOUT (default 330 s) while the 1024² synthetic
#   data is generated beside it; if the build fails or times out, the script says so and falls
#   back: mmcv-lite (the same mmcv without compiled ops) + a stand-in `mmcv._ext` whose ops raise,
#   with mmcv's deformable attention forced onto its PyTorch path (the only mmcv op QueryMeldNet
#   training uses: with every compiled op raising, the tiny model trains on CPU; point sampling
#   is plain grid_sample); the CUDA-vs-PyTorch comparison is then reported as skipped. Then the
#   check and 50 iterations (TRAIN_TIMEOUT, default 200 s).
# --dry-run: the tiny demo model at 64 px, 3 iterations, --amp (bf16 autocast on CPU), in the
# current environment; set OMP_NUM_THREADS=1 on a machine shared with other jobs.
# The log goes to $OUT/gpu_check.log when $OUT is set (the device tool's output folder).
# Rehearsal of the GPU branch without a GPU (cp311 wheels, R50 meld at 128 px, 3 iterations):
#   PYTHON=.venv/bin/python WHEELHOUSE=<cp311 wheelhouse> GPU_CHECK_SIZE=128 GPU_CHECK_ITERS=3 \
#   MMCV_BUILD_TIMEOUT=30 TRAIN_TIMEOUT=600 bash tools/analysis/gpu_check.sh
set -uo pipefail

MODE=gpu
case "${1:-}" in
  --prepare) MODE=prepare ;;
  --dry-run) MODE=dry ;;
  --bench) MODE=bench ;;
  '') ;;
  *) echo "usage: $0 [--prepare | --dry-run | --bench]" >&2; exit 2 ;;
esac

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 2
WHEELHOUSE=${WHEELHOUSE:-$REPO/wheelhouse}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check}
MMCV_BUILD_TIMEOUT=${MMCV_BUILD_TIMEOUT:-330}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-200}
SIZE=${GPU_CHECK_SIZE:-1024}   # image size and iterations of the GPU run (overridable for
ITERS=${GPU_CHECK_ITERS:-50}   # a rehearsal of the GPU branch on another machine)
mkdir -p "$WORK"
LOG=${OUT:-$WORK}/gpu_check.log
exec > >(tee -a "$LOG") 2>&1
log() { echo "[gpu_check $(date +%T) +${SECONDS}s] $*"; }

# Wheels for Python 3.12 (the GPU image has torch, numpy, scipy, opencv-headless, matplotlib,
# timm, huggingface_hub, safetensors, regex, rich, tqdm, einops, scikit-image; these it lacks).
WHEELS=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0
        open_clip_torch==3.3.0 pycocotools==2.0.11 pysodmetrics==1.6.2 addict termcolor yapf
        platformdirs shapely terminaltables prettytable wcwidth mat4py modelindex ordered-set
        ftfy importlib-metadata)

if [ "$MODE" = prepare ]; then
  PY=${PYTHON:-$REPO/.venv/bin/python}
  [ -x "$PY" ] || PY=python3
  rm -rf "$WHEELHOUSE" && mkdir -p "$WHEELHOUSE/lite" "$WHEELHOUSE/build" || exit 1
  log "downloading cp312 wheels into $WHEELHOUSE"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELHOUSE" \
    "${WHEELS[@]}" || exit 1
  log 'setuptools<82 for the mmcv build (82 removed pkg_resources, which mmcv setup.py imports)'
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$WHEELHOUSE/build" \
    'setuptools<82' || exit 1
  log 'downloading the mmcv 2.1.0 sdist (built there with CUDA)'
  "$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation -d "$WHEELHOUSE" \
    mmcv==2.1.0 || exit 1
  log 'building mmcv-lite 2.1.0 (no compiled ops) from the sdist, for the fallback'
  MMCV_WITH_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELHOUSE/lite" \
    "$WHEELHOUSE"/mmcv-2.1.0.tar.gz || exit 1
  ls -la "$WHEELHOUSE" "$WHEELHOUSE/lite" "$WHEELHOUSE/build"
  du -sh "$WHEELHOUSE"
  log 'done: carry wheelhouse/ to the GPU machine'
  exit 0
fi

if [ "$MODE" = dry ]; then
  PY=${PYTHON:-$REPO/.venv/bin/python}
  [ -x "$PY" ] || PY=python3
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
  log "dry run: tiny sizes on CPU with $PY, no install, no mmcv build"
  # bf16 autocast on CPU: tools/train.py --amp uses mmquerymeld's AutocastOptimWrapper there
  timeout "${DRY_TIMEOUT:-300}" "$PY" tools/analysis/benchmark_gpucheck.py \
    --config "${DRY_CONFIG:-$REPO/configs/demo/querymeld_tiny_synthetic.py}" --size 64 \
    --iters 3 --warmup 1 --workers 0 --num-train 2 --amp --tiny-msda --work-dir "$WORK/dry"
  rc=$?
  log "dry run finished: exit $rc"
  exit $rc
fi

# ------------------------------------------------------------------------------- GPU machine
PY=${PYTHON:-python3}
log 'machine'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch",
  torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' || exit 1
echo "cores: $(nproc --all)"  # (plain nproc honours OMP_NUM_THREADS)
[ -d "$WHEELHOUSE" ] || { log "no $WHEELHOUSE: run --prepare here and carry it"; exit 2; }

log 'step 1: install the wheels (no index, no deps: the image provides torch & co)'
SITE=$WORK/site       # mmengine, mmdet, mmseg, mmpretrain, open_clip, ...
LITE=$WORK/lite_site  # mmcv-lite + a stand-in mmcv._ext: imports work without compiled ops
rm -rf "$SITE" "$LITE" "$WORK/mmcv_site" "$WORK/build_site"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
  "$WHEELHOUSE"/*.whl || { log 'install failed'; exit 1; }
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$LITE" \
  "$WHEELHOUSE"/lite/mmcv_lite-*.whl || { log 'mmcv-lite install failed'; exit 1; }
cat > "$LITE/mmcv/_ext.py" <<'EOF'
"""Stand-in for mmcv's compiled ops (tools/analysis/gpu_check.sh fallback): every op raises."""


def __getattr__(name):
    if name.startswith('__'):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise NotImplementedError(f'mmcv op {name!r} is not built (gpu_check.sh fallback)')
    return missing
EOF
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$WORK/build_site" \
  "$WHEELHOUSE"/build/*.whl || { log 'setuptools install failed'; exit 1; }
export PYTHONPATH="$REPO:$SITE"

log "step 2: build mmcv 2.1.0 with CUDA ops (time box ${MMCV_BUILD_TIMEOUT}s), data beside it"
# (timeout signals its whole process group on expiry: ninja / nvcc stop with pip)
( timeout "$MMCV_BUILD_TIMEOUT" env PYTHONPATH="$WORK/build_site:$PYTHONPATH" \
    TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="${MAX_JOBS:-$(nproc --all)}" FORCE_CUDA=1 MMCV_WITH_OPS=1 \
    "$PY" -m pip install --no-index --no-deps --no-build-isolation --no-compile \
    --target "$WORK/mmcv_site" "$WHEELHOUSE"/mmcv-2.1.0.tar.gz \
    > "$WORK/mmcv_build.log" 2>&1; echo $? > "$WORK/mmcv_build.rc" ) &
BUILD_PID=$!
# the generator imports mmquerymeld (hence mmcv): it runs on the mmcv-lite copy
[ "$MODE" = bench ] || PYTHONPATH="$REPO:$SITE:$LITE" "$PY" -c "
import sys; sys.path.insert(0, 'tools/analysis')
import benchmark_gpucheck as g
g.make_data('$WORK/data$SIZE', $SIZE, 4)" > "$WORK/data.log" 2>&1 &
DATA_PID=$!
wait "$DATA_PID"; log "data generated (exit $?)"; tail -3 "$WORK/data.log"
wait "$BUILD_PID"
BUILD_RC=$(cat "$WORK/mmcv_build.rc" 2>/dev/null || echo 1)
FALLBACK=()
if [ "$BUILD_RC" = 0 ] && PYTHONPATH="$PYTHONPATH:$WORK/mmcv_site" "$PY" -c \
    'from mmcv.ops.multi_scale_deform_attn import ext_module; print(ext_module.__file__)'; then
  export PYTHONPATH="$PYTHONPATH:$WORK/mmcv_site"
  log "mmcv built with CUDA ops, ${SECONDS}s since the start"
else
  if [ "$BUILD_RC" = 124 ]; then why="timed out after ${MMCV_BUILD_TIMEOUT}s"
  else why="failed (exit $BUILD_RC)"; fi
  log "mmcv CUDA build $why; last lines of its log:"
  tail -25 "$WORK/mmcv_build.log"
  log 'FALLBACK: mmcv-lite + stand-in mmcv._ext; deformable attention on its PyTorch path;'
  log 'the CUDA-vs-PyTorch comparison is skipped'
  export PYTHONPATH="$PYTHONPATH:$LITE"
  FALLBACK=(--msda-pytorch)  # (benchmark_gpucheck.py and benchmark.py take the same flag)
fi
[ -n "${OUT:-}" ] && cp "$WORK/mmcv_build.log" "$OUT/mmcv_build.log" 2>/dev/null

if [ "$MODE" = bench ]; then
  BENCH_OUT=${OUT:-$WORK}/benchmark
  mkdir -p "$BENCH_OUT"
  log "bench: one training step, QueryMeldNet vs Mask2Former, 1024² (time box ${BENCH_TRAIN_TIMEOUT:-100}s)"
  timeout "${BENCH_TRAIN_TIMEOUT:-100}" "$PY" tools/analysis/benchmark.py train --device cuda \
    --size 1024 --repeats 3 --timeout 60 --out "$BENCH_OUT" ${FALLBACK[@]+"${FALLBACK[@]}"}
  log "bench train: exit $?"
  log "bench: predict, 1024² and 1024² of a 2560x3072 original (time box ${BENCH_INFER_TIMEOUT:-150}s)"
  timeout "${BENCH_INFER_TIMEOUT:-150}" "$PY" tools/analysis/benchmark.py infer --device cuda \
    --size 1024 --large-original yes --vocab 80 --repeats 3 --timeout 60 --max-procs 8 \
    --tasks panoptic semantic instance referring foreground --out "$BENCH_OUT" \
    ${FALLBACK[@]+"${FALLBACK[@]}"}
  log "bench infer (80 texts): exit $?"
  timeout "${BENCH_VOCAB_TIMEOUT:-80}" "$PY" tools/analysis/benchmark.py infer --device cuda \
    --size 1024 --large-original yes --vocab 1203 --repeats 3 --timeout 60 --tasks semantic \
    --out "$BENCH_OUT" ${FALLBACK[@]+"${FALLBACK[@]}"}
  log "bench infer (1203 texts): exit $?, ${SECONDS}s in all"
  cat "$BENCH_OUT"/*.md
  exit 0
fi

log "steps 3-5: deformable attention check, config, $ITERS iterations at ${SIZE}px with --amp"
timeout "$TRAIN_TIMEOUT" "$PY" tools/analysis/benchmark_gpucheck.py --size "$SIZE" \
  --iters "$ITERS" --warmup 10 --workers 8 --amp ${FALLBACK[@]+"${FALLBACK[@]}"} --work-dir "$WORK"
rc=$?
[ "$rc" = 124 ] && log "training stopped by its time box (${TRAIN_TIMEOUT}s)"
log "gpu check finished: exit $rc, ${SECONDS}s in all"
exit $rc
