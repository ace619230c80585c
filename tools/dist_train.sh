#!/usr/bin/env sh
# Distributed training with torchrun: sh tools/dist_train.sh CONFIG NPROC [train.py args...]
# One process per GPU; without a GPU, NPROC CPU processes talk over gloo (basicvsr_archival.engine).
# Environment: PORT (default 29500), NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1).
set -e
if [ "$#" -lt 2 ]; then
    echo "usage: sh $0 CONFIG NPROC [--work-dir DIR] [--resume [CKPT]] [--cfg-options k=v ...]" >&2
    exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# check the config and arguments once: a bad one gets one error line, not one per rank plus torchrun's report
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python "$ROOT/tools/train.py" "$CONFIG" --check "$@" || exit $?
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec python -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
