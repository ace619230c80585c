#!/usr/bin/env sh
# Distributed testing with torchrun: sh tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args...]
# One process per GPU; without a GPU, NPROC CPU processes talk over gloo (basicvsr_archival.engine).
# Environment: PORT (default 29500), NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1).
set -e
if [ "$#" -lt 3 ]; then
    echo "usage: sh $0 CONFIG CHECKPOINT NPROC [--save-path DIR] [--work-dir DIR] [--cfg-options k=v ...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec python -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
