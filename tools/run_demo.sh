#!/usr/bin/env bash
# Quick-start command 1, the main job: set up the environment (idempotent), generate the synthetic
# world, train the tiny QueryMeldNet jointly on all of its tasks, evaluate every source with its
# metric and paint test pictures.
#   bash tools/run_demo.sh            (WORK_DIR=work_dirs/demo, MAX_ITERS from the config)
# Re-running resumes an interrupted training, skips a finished one, and re-evaluates.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="$(bash "$REPO/tools/setup_env.sh" | tail -n 1)"
cd "$REPO"
CONFIG=configs/demo/querymeld_tiny_synthetic.py
WORK_DIR="${WORK_DIR:-work_dirs/demo}"
DATA_ROOT=data/synthetic
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

if [ ! -f "$DATA_ROOT/world_info.json" ]; then
  echo "[demo] generating the synthetic world in $DATA_ROOT"
  "$PY" tools/dataset_converters/make_synthetic_world.py --out "$DATA_ROOT" --seed 0
fi

MAX_ITERS="${MAX_ITERS:-$("$PY" -c "from mmengine.config import Config; print(Config.fromfile('$CONFIG').train_cfg.max_iters)")}"
CKPT="$WORK_DIR/iter_${MAX_ITERS}.pth"
if [ -f "$CKPT" ]; then
  echo "[demo] training already finished: $CKPT"
else
  echo "[demo] training $CONFIG for $MAX_ITERS iterations (resumes a partial run) -> $WORK_DIR"
  "$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --resume \
    --cfg-options train_cfg.max_iters="$MAX_ITERS"
fi

echo "[demo] evaluating $CKPT on every validation source"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" --show-dir vis \
  --metrics-out "$WORK_DIR/metrics.json"
"$PY" tools/analysis/print_metrics.py "$WORK_DIR/metrics.json"
VIS_DIR="$(ls -td "$WORK_DIR"/*/vis 2>/dev/null | head -n 1)"
echo
echo "[demo] metrics: $WORK_DIR/metrics.json"
echo "[demo] pictures (ground truth left, prediction right), one folder per source: $VIS_DIR"
