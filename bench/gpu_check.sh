#!/usr/bin/env bash
# The GPU check: one prepared run of every GPU figure this project reports, for a lent
# GPU machine (a few minutes on one H200). Each step has its own time limit, so one slow
# or failing step never hides the others; the summary table at the end says which ran.
#
#   bash bench/gpu_check.sh            # full run (at most 9 minutes: the steps' limits; about 4 on an H200)
#   bash bench/gpu_check.sh --quick    # smoke run of the same steps (also works on a CPU)
#
# Writes the whole log and the summary to $OUT (or bench/gpu_check-out/ when OUT is unset).
# Packages the GPU machine lacks travel as wheels in .whl/ (bench/README.md "GPU check"):
# they are installed into /tmp/site first when that folder exists.
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
DEST=${OUT:-bench/gpu_check-out}; mkdir -p "$DEST"
LOG="$DEST/gpu_check.log"; SUMMARY="$DEST/gpu_check.md"; : >"$LOG"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
# The machine may lack this project's editable install: the repo root goes on the path.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
DEVICE=$($PY -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")

ROWS=()
# step NAME LIMIT_S COMMAND...: run one step with its own limit, log it, remember rc and seconds.
step() {
  local name=$1 limit=$2; shift 2
  echo -e "\n===== $name (limit ${limit} s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  ROWS+=("| $name | $([ "$rc" = 0 ] && echo ok || { [ "$rc" = 124 ] && echo "timed out" || echo "failed (rc $rc)"; }) | $((SECONDS - t0)) |")
}

if [ $QUICK = 1 ]; then
  F_NET=64; F_PIPE=128; ESV_ARGS=(--quick --sizes 8 12); B_ARGS=(--quick)
else
  F_NET=4096; F_PIPE=16384; ESV_ARGS=(--sizes 8 12 14 16 20); B_ARGS=()
fi

step "machine" 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo 'no nvidia-smi'; nproc; $PY -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\")'"
step "GPU tests (CPU = GPU results)" 60 $PY -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/test_esv.py tests/test_esv_batch.py tests/test_esv_surrogate.py -k "cuda"
step "encoder: network / decoded / jpeg" 120 $PY bench/extract_speed.py --device "$DEVICE" --modes network,decoded,jpeg \
  --workers "$(nproc)" --frames "$F_NET"
step "encoder: bulk path (FeatureExtractor on a gulp dataset)" 150 $PY bench/extract_speed.py --device "$DEVICE" \
  --modes pipeline --frames "$F_PIPE" --repeats 1
step "exact ESVs, batched" 90 $PY bench/esv_speed.py --device "$DEVICE" --tables batched "${B_ARGS[@]}"
step "exact ESVs, one clip" 100 $PY bench/esv_speed.py --device "$DEVICE" --tables exact "${ESV_ARGS[@]}"
step "exact ESVs through the service (app, CLI)" 90 bash -c "$PY -m pytest -q -p no:cacheprovider -o addopts='' tests/test_esv_device.py -k cuda && $PY bench/esv_service.py --device $DEVICE ${B_ARGS[*]}"

{
  # A copied tree may carry another commit's git metadata: name the code by its content too.
  CODE=$(find core bench -name '*.py' -o -name '*.sh' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), git HEAD $(git rev-parse --short HEAD 2>/dev/null || echo unknown), code $CODE, device $DEVICE)"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "## Figures (from the log)"
  grep -E "^\||clips x n|^ +n +median|^ *[0-9]+ +[0-9.]+ s |^n=|^(NVIDIA|cpu).* (network|decoded|jpeg|pipeline) +(yes|no) " "$LOG" || true
} >"$SUMMARY"
cat "$SUMMARY"
