#!/usr/bin/env bash
# GPU check of the Pallas selective scan (one GPU, no network), from the repo root:
#   bash benchmarks/gpu_check.sh
# Installs the package (editable, no deps), then runs benchmarks/gpu_check.py; under 8 minutes.
# If the Python process dies (e.g. a compiler crash), the XLA timings are rerun without Pallas.
python3 -m pip install --no-deps --no-build-isolation -e . -q
set -u
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout -k 10 430 python3 benchmarks/gpu_check.py "$@"
rc=$?
if [ "$rc" -eq 124 ]; then
  echo "gpu_check.py stopped by the 430 s timeout"
elif [ "$rc" -ne 0 ] && [ "$SECONDS" -lt 300 ]; then
  left=$((440 - SECONDS))
  echo "gpu_check.py exited with status $rc; rerunning the XLA timings only (${left} s)"
  timeout -k 10 "$left" python3 benchmarks/gpu_check.py --skip-pallas --budget "$((left - 15))" "$@"
fi
exit "$rc"
