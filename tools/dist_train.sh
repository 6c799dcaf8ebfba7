#!/usr/bin/env bash
# Distributed training with torchrun.
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT are honoured. On a machine without GPUs the
# processes run on CPU with the gloo backend (env_cfg.dist_cfg.backend is switched automatically).
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON=${PYTHON:-python}
if [ -x "$REPO/.venv/bin/python" ] && [ -z "${VIRTUAL_ENV:-}" ] && [ "$PYTHON" = python ]; then
  PYTHON="$REPO/.venv/bin/python"
fi
PYTHONPATH="$REPO:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$REPO/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
