#!/usr/bin/env bash
# The GPU check: one prepared run of every GPU figure this project reports, for a lent
# GPU machine (within 5 minutes on one H200: the steps' limits add up to 300 s). Each step
# has its own time limit, so one slow or failing step never hides the others; the summary
# table at the end says which ran.
#
#   bash bench/gpu_check.sh            # full run
#   bash bench/gpu_check.sh --quick    # smoke run of the same steps at tiny sizes (on the GPU when there is one)
#   bash bench/gpu_check.sh --dry-run  # every step at tiny sizes on the CPU (CUDA hidden): the same table
#
# Steps: machine; GPU tests; encoder network/decoded/jpeg; features of the batched path = the
# CPU path's (bench/extract_equal.py); the bulk path, batched vs per-clip side by side
# (extract_speed.py --modes pipeline); `python -m core extract --device cuda` end to end on
# a generated EPIC-layout dataset in a temp folder (bench/cli_extract.py); exact ESVs, from the
# engine (bench/esv_speed.py) and through the explanation service the app and CLI use (bench/esv_service.py).
#
# Writes the whole log and the summary to $OUT (or bench/gpu_check-out/ when OUT is unset).
# Packages the GPU machine lacks travel as wheels in .whl/ (bench/README.md "GPU check"):
# they are installed into /tmp/site first when that folder exists. Bring, for the machine's
# Python and platform (manylinux x86_64):
#   simplejpeg, av, gulpio2, sh, docopt     (decoding, the gulp format)
#   torchvision built for the machine's torch and CUDA exactly (torch 2.11 + cu130 ->
#     torchvision 0.26.x+cu130; pytorch.org's compatibility table): nvJPEG decoding on the
#     GPU. Without it (or with one that does not match: its extension fails to load) the
#     batched path decodes on CPU threads and the "batched" rows equal "batched-hostdecode".
#   pytest (when the machine has none: the GPU tests step)
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0; DRY=0; SCALE=1
case "${1:-}" in
  --quick) QUICK=1 ;;
  --dry-run) QUICK=1; DRY=1; SCALE=10; export CUDA_VISIBLE_DEVICES="" ;;  # tiny sizes, torch sees no GPU; a CPU's start-up is slower: 10x the limits
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--quick|--dry-run]" >&2; exit 2 ;;
esac
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
  local name=$1 limit=$(($2 * SCALE)); shift 2
  echo -e "\n===== $name (limit ${limit} s): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  ROWS+=("| $name | $([ "$rc" = 0 ] && echo ok || { [ "$rc" = 124 ] && echo "timed out" || echo "failed (rc $rc)"; }) | $((SECONDS - t0)) |")
}

if [ $QUICK = 1 ]; then
  F_NET=64; F_PIPE=128; F_CLI=64; EQ_ARGS=(--lengths 7,12,5 --batch-size 8); ESV_ARGS=(--quick --sizes 8 12); B_ARGS=(--quick)
else
  F_NET=4096; F_PIPE=12288; F_CLI=24576; EQ_ARGS=(); ESV_ARGS=(--sizes 8 12 14 16 20); B_ARGS=()
fi

step "machine" 15 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo 'no nvidia-smi'; nproc; $PY -c 'import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\")'; $PY -c 'import torchvision; print(\"torchvision\", torchvision.__version__)' 2>&1 | tail -1"
step "GPU tests (CPU = GPU results)" 30 $PY -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/test_esv.py tests/test_esv_batch.py tests/test_esv_surrogate.py tests/test_esv_device.py -k "cuda"
step "encoder: network / decoded / jpeg" 40 $PY bench/extract_speed.py --device "$DEVICE" --modes network,decoded,jpeg \
  --workers "$(nproc)" --frames "$F_NET"
step "features: batched path = CPU path" 30 $PY bench/extract_equal.py --device "$DEVICE" "${EQ_ARGS[@]}"
step "bulk path: batched vs per-clip (FeatureExtractor on a gulp dataset)" 70 $PY bench/extract_speed.py --device "$DEVICE" \
  --modes pipeline --frames "$F_PIPE" --repeats 1 --pipeline-threads "$(nproc)"
step "CLI: python -m core extract --device $DEVICE" 55 $PY bench/cli_extract.py --device "$DEVICE" --frames "$F_CLI"
step "exact ESVs, batched" 20 $PY bench/esv_speed.py --device "$DEVICE" --tables batched "${B_ARGS[@]}"
step "exact ESVs, one clip" 20 $PY bench/esv_speed.py --device "$DEVICE" --tables exact "${ESV_ARGS[@]}"
step "exact ESVs through the service (app, CLI)" 20 $PY bench/esv_service.py --device "$DEVICE" "${B_ARGS[@]}"
{
  # A copied tree may carry another commit's git metadata: name the code by its content too.
  CODE=$(find core bench -name '*.py' -o -name '*.sh' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-12)
  echo "# GPU check$([ $DRY = 1 ] && echo ' DRY RUN (CPU, tiny sizes: no GPU figure)') ($(date -u +%Y-%m-%dT%H:%MZ), git HEAD $(git rev-parse --short HEAD 2>/dev/null || echo unknown), code $CODE, device $DEVICE)"
  echo
  echo "| step | result | seconds |"
  echo "|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "## Figures (from the log)"
  grep -E "^\||clips x n|^ +n +median|^ *[0-9]+ +[0-9.]+ s |^n=|^(NVIDIA|cpu).* (network|decoded|jpeg|pipeline) +(yes|no) |^  ratio |^equal |^cli extract" "$LOG" || true
} >"$SUMMARY"
cat "$SUMMARY"
