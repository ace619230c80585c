#!/usr/bin/env bash
# GPU check of BasicVSR++ in one command, for a lent GPU machine that has torch but none of the
# project's other pure-Python dependencies and no package index (README, "GPU check").
#
#   bash benchmarks/gpu_check.sh --prepare   # here: pack mmengine & co. + a little reference data
#                                            #   into build/gpu_wheelhouse (ignored; carry it along)
#   bash benchmarks/gpu_check.sh             # there: the CUDA tests, then benchmarks/gpu_check.py
#   bash benchmarks/gpu_check.sh --dry-run   # here: the same on the CPU at tiny sizes (< 1 minute)
#
# There, the packed modules that do not import already are unpacked into a temporary folder put on
# PYTHONPATH; PyAV (and OpenCV, if missing) get stand-ins that fail on use: video I/O is skipped on
# that machine (the restore test skips itself without an ffmpeg binary). Time-boxed to < 8 minutes:
# the tests 150 s, the checks 300 s (torch.compile inside them 150 s). Extra arguments go to
# gpu_check.py (e.g. --json out.json, --compile-timeout 0).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
HOUSE=build/gpu_wheelhouse
mode=gpu
case "${1:-}" in
  --prepare) mode=prepare; shift ;;
  --dry-run) mode=dry; shift ;;
  -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

if [ "$mode" = prepare ]; then
  exec "$PY" benchmarks/gpu_check.py --prepare "$@"
fi

export PYTHONUNBUFFERED=1
if [ "$mode" = gpu ]; then
  if [ ! -f "$HOUSE/deps.zip" ]; then
    echo "gpu_check: $HOUSE/deps.zip is missing: run 'bash benchmarks/gpu_check.sh --prepare' where" \
         "the project is installed and carry $HOUSE along" >&2
    exit 2
  fi
  site=$(mktemp -d /tmp/basicvsr_gpu_site.XXXXXX)
  trap 'rm -rf "$site"' EXIT
  "$PY" benchmarks/gpu_check.py --unpack "$site" || exit 2
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  check_args=()
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  check_args=(--dry-run)
fi

tests_rc=0
if "$PY" -c "import pytest" 2>/dev/null; then
  echo "== CUDA tests (tests/models/test_cuda.py; they skip without a GPU)"
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/models/test_cuda.py
  tests_rc=$?
else
  echo "== CUDA tests skipped: pytest does not import"
fi

echo "== checks (benchmarks/gpu_check.py ${check_args[*]} $*)"
timeout 300 "$PY" benchmarks/gpu_check.py "${check_args[@]}" "$@"
checks_rc=$?

echo "== gpu_check: tests exit $tests_rc, checks exit $checks_rc"
[ "$tests_rc" -eq 0 ] && [ "$checks_rc" -eq 0 ]
