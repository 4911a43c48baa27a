#!/usr/bin/env bash
# Nightly GPU reproductions (under an hour on one GPU). Called by .github/workflows/nightly-gpu.yml;
# runs the same way by hand on any CUDA machine:   scripts/nightly_gpu.sh [OUT_DIR]
#
# 1. installs the suite for CUDA with mamba-ssm built from source (the reference CUDA kernel, see install.sh);
# 2. runs the GPU reproductions (FPS of every Table 2 row at batch 1 and 64 as a ratio to HRNet-W32,
#    timed each in its own process) and params/GFLOPs of every row. Accuracy (marker `data`: full
#    COCO/MPII/AP-10K evaluations, tens of minutes each) is left to the full-training workflow and to
#    `MAMKPD_NIGHTLY_DATA=1` on runners with data and checkpoints;
# 3. compiles the Triton kernels and runs their interpreter tests under the oldest and newest Triton of
#    pyproject's `gpu` range (scripts/triton_versions.sh);
# 4. writes the report from the store. The store and the report are the artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-nightly}
mkdir -p "$OUT"
export MAMKPD_RESULTS="$OUT/results.csv"

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
if [[ "${MAMKPD_SKIP_INSTALL:-0}" != "1" ]]; then
    ./install.sh --cuda --with-mamba-ssm
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device on this runner'"

# GPU reproductions first (the reason the job exists), then what needs data; each step keeps going
# on failure so the report still shows every row, and the script's status is the reproductions'.
status=0
timeout 40m python3 -m pytest reproductions -m "gpu and not data" -q -p no:cacheprovider \
    --junitxml="$OUT/gpu-junit.xml" || status=$?
timeout 10m python3 -m pytest reproductions -m "not gpu and not data" -q -p no:cacheprovider \
    --junitxml="$OUT/cpu-junit.xml" || status=$?
# the Triton kernels under the oldest and newest Triton of pyproject's `gpu` range (CPU, a few minutes)
timeout 15m scripts/triton_versions.sh > "$OUT/triton-versions.log" 2>&1 || status=$?
if [[ "${MAMKPD_NIGHTLY_DATA:-0}" == "1" ]]; then
    python3 -m pytest reproductions -m "data" -q -p no:cacheprovider --junitxml="$OUT/data-junit.xml" || status=$?
fi
python3 -m mamkpd.cli report --store "$MAMKPD_RESULTS" --out "$OUT/reports"
exit "$status"
