#!/usr/bin/env bash
# GPU checks (one GPU, no network), from the repo root:
#   bash benchmarks/gpu_check.sh              # part "scan" (≤ 330 s), then part "mean" (≤ 210 s)
#   bash benchmarks/gpu_check.sh --mean-only  # part "mean" alone (≤ 210 s): the 1000-image
#                                             # attention_mean and the forward img/s (issue 16)
#   bash benchmarks/gpu_check.sh --scan-only  # part "scan" alone (≤ 440 s): the Pallas scan
# Further arguments go to benchmarks/gpu_check.py.  Installs the package (editable, no deps).
# Each part runs in its own process under its own timeout (GPU_CHECK_SCAN_S, GPU_CHECK_MEAN_S
# override them), so a crash or a hang in one part leaves the other's measurements.  If the scan
# part's process dies early (e.g. a compiler crash), its XLA timings are rerun without Pallas.
python3 -m pip install --no-deps --no-build-isolation -e . -q
set -u
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false
cd "$(dirname "$0")/.."
parts="scan mean"
scan_s=${GPU_CHECK_SCAN_S:-330}
mean_s=${GPU_CHECK_MEAN_S:-210}
case "${1:-}" in
  --mean-only) parts="mean"; shift ;;
  --scan-only) parts="scan"; scan_s=${GPU_CHECK_SCAN_S:-430}; shift ;;
esac
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
for part in $parts; do
  start=$SECONDS
  if [ "$part" = scan ]; then
    timeout -k 10 "$scan_s" python3 benchmarks/gpu_check.py --part scan \
      --budget "$((scan_s - 30))" "$@"
    rc=$?
    used=$((SECONDS - start))
    if [ "$rc" -eq 124 ]; then
      echo "part scan stopped by the ${scan_s} s timeout"
    elif [ "$rc" -ne 0 ] && [ "$used" -lt $((scan_s * 2 / 3)) ]; then
      left=$((scan_s + 10 - used))
      echo "part scan exited with status $rc; rerunning the XLA timings only (${left} s)"
      timeout -k 10 "$left" python3 benchmarks/gpu_check.py --part scan --skip-pallas \
        --budget "$((left - 15))" "$@"
    fi
  else
    timeout -k 10 "$mean_s" python3 benchmarks/gpu_check.py --part mean \
      --mean-budget "$((mean_s - 20))" "$@"
    rc=$?
    if [ "$rc" -eq 124 ]; then
      echo "part mean stopped by the ${mean_s} s timeout"
    fi
  fi
  if [ "$rc" -ne 0 ]; then
    status=$rc
  fi
done
exit "$status"
