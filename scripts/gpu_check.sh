#!/usr/bin/env bash
# The GPU check: one prepared run on a bare CUDA machine (CUDA torch, triton, numpy, pandas; no network, no
# mamba-ssm), under 8 minutes on one GPU. See README.md, "Checking a GPU machine".
#   scripts/gpu_check.sh [--wheels DIR] OUT_DIR     on a CUDA machine (DIR: from scripts/make_wheelhouse.sh)
#   scripts/gpu_check.sh --dry-run OUT_DIR          every step on the CPU at tiny sizes (CI, tests/test_gpu_check.py)
# Steps: install the suite offline into this Python (no torch reinstall), the `gpu`-marked tests, then the
# harness (python -m mamkpd.cli.gpu_check: scan kernels, Table 2's models, one training step, each part in
# its own process under a budget), then the report. Everything lands in OUT_DIR; skipped work is printed with
# its reason. The exit status is non-zero only when the tests fail or a step breaks, never for a goal missed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dry=0
wheels=""
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --wheels) wheels=${2:?--wheels needs a folder}; shift ;;
        -*) echo "gpu_check.sh: unknown option '$1' (use --dry-run, --wheels DIR)" >&2; exit 2 ;;
        *) out=$1 ;;
    esac
    shift
done
if [[ -z $out ]]; then
    echo "usage: scripts/gpu_check.sh [--dry-run] [--wheels DIR] OUT_DIR" >&2
    exit 2
fi
if [[ -n $wheels && ! -d $wheels ]]; then
    echo "gpu_check.sh: --wheels $wheels is not a folder" >&2
    exit 2
fi
# a full check needs a CUDA device: say so before installing or testing anything (nothing is written)
if [[ $dry == 0 ]]; then
    no_cuda=$("$PY" -c 'import torch; print("" if torch.cuda.is_available() else "torch.cuda.is_available() is False")' 2>&1) \
        || no_cuda="torch does not import with $PY: $(tail -n 1 <<<"$no_cuda")"
    if [[ -n $no_cuda ]]; then
        echo "gpu_check.sh: no CUDA device here ($no_cuda); use --dry-run to rehearse on the CPU" >&2
        exit 2
    fi
fi
start=$(date +%s)
total_s=450  # under 8 minutes, with room for the process starts and the final prints
mkdir -p "$out"
: >"$out/steps.tsv"
step() {  # step STATUS DETAIL: one line of the summary's "Steps" table, echoed
    printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$out/steps.tsv"
    echo "[gpu-check] $1: $2${3:+ ($3)}"
}
left() { echo $((total_s - ($(date +%s) - start))); }
# the children import this checkout whether or not the install worked
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MAMKPD_RESULTS="$out/results.csv"
status=0

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv >"$out/gpu.txt" 2>&1
fi

# 1. install: offline, no dependencies, no torch reinstall (a dry run asks pip what it would do, changing nothing)
install=(-m pip install --disable-pip-version-check --no-index --no-deps --no-build-isolation -e .)
[[ $dry == 1 ]] && install+=(--dry-run)
if timeout 90 "$PY" "${install[@]}" >"$out/install.log" 2>&1; then
    step install ok "pip install --no-deps -e .$([[ $dry == 1 ]] && echo ' --dry-run')"
else
    step install failed "see install.log; the check runs from the checkout through PYTHONPATH"
fi
# the suite's dependencies that do not import here: from --wheels where given (scripts/make_wheelhouse.sh makes
# the folder), else listed (none is on the FPS path)
missing_dependencies() {
    "$PY" - <<'EOF'
import importlib.util
modules = {"numpy": "numpy", "pandas": "pandas", "scipy": "scipy", "opencv-python-headless": "cv2",
           "pycocotools": "pycocotools", "fvcore": "fvcore", "matplotlib": "matplotlib", "tqdm": "tqdm",
           "filelock": "filelock", "onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime",
           "nvidia-ml-py": "pynvml", "numba": "numba", "pytest": "pytest", "triton": "triton"}
print(" ".join(d for d, m in modules.items() if importlib.util.find_spec(m) is None))
EOF
}
missing=$(missing_dependencies)
if [[ -n $missing && -n $wheels ]]; then
    # one at a time, so that one absent from the folder does not stop pip installing the others; offline and
    # without build isolation (the build requirements of an sdist could not be fetched)
    for dependency in $missing; do
        timeout 120 "$PY" -m pip install --disable-pip-version-check --no-index --no-build-isolation \
            --find-links "$wheels" "$dependency" >>"$out/install.log" 2>&1
    done
    still=$(missing_dependencies)
    if [[ -z $still ]]; then
        step dependencies ok "installed from $wheels: $missing"
    else
        step dependencies partial "still missing after installing from $wheels: $still (install.log)"
    fi
elif [[ -n $missing ]]; then
    step dependencies absent "$missing (none is imported on the check's path; give --wheels DIR to install them)"
fi

# 2. the gpu-marked tests, from the modules that hold them (the others may import what a bare machine lacks);
# addopts reset: pytest-benchmark may be absent. Their compiled Triton kernels stay cached for step 3.
tests_s=120
[[ $dry == 1 ]] && tests_s=60
mapfile -t gpu_tests < <(grep -l -E 'mark\.gpu|requires_cuda' tests/test_*.py)
timeout "$tests_s" "$PY" -m pytest "${gpu_tests[@]}" -m gpu -q -p no:cacheprovider -o addopts=-ra --durations=10 \
    --continue-on-collection-errors --junitxml="$out/gpu-tests.xml" >"$out/gpu-tests.log" 2>&1
rc=$?
summary=$(tail -n 1 "$out/gpu-tests.log")
case $rc in
    0) step tests passed "$summary" ;;
    5) step tests "none ran" "no gpu-marked test collected" ;;
    124) step tests skipped "ran past ${tests_s} s and was stopped (gpu-tests.log)"; status=1 ;;
    *) step tests failed "$summary (gpu-tests.log)"; status=1 ;;
esac

# 3. the harness: scan kernels, model speed, training step (its own budgets; stopped at what is left)
harness_s=$(($(left) - 30))
if [[ $harness_s -lt 30 ]]; then
    step harness skipped "only $(left) s of the 8 minutes left"
    status=1
else
    args=("$out" --seconds "$harness_s")
    [[ $dry == 1 ]] && args+=(--dry-run)
    timeout $((harness_s + 20)) "$PY" -m mamkpd.cli.gpu_check "${args[@]}" 2>&1 | tee "$out/harness.log"
    rc=${PIPESTATUS[0]}
    [[ $rc != 0 ]] && { step harness failed "exit status $rc (harness.log)"; status=1; }
fi

# 4. the report from the store
if [[ -s $out/results.csv ]]; then
    # the report layer directly: the command line imports the data layer (OpenCV), absent on a bare machine
    if timeout 25 "$PY" -c 'import sys; from mamkpd.report import write_report; write_report(sys.argv[1], sys.argv[2])' \
        "$out/results.csv" "$out/report" >"$out/report.log" 2>&1; then
        step report ok "$out/report/REPORT.md"
    elif missing_module=$(grep -o -m 1 "No module named '[^']*'\|import of [^ ]* halted" "$out/report.log"); then
        # the report's findings reach the evaluation and data layers (pycocotools, OpenCV): --wheels DIR brings them
        step report skipped "$missing_module; gpu_check.md holds every figure of the check"
    else
        step report failed "$(tail -n 1 "$out/report.log")"
        status=1
    fi
else
    step report skipped "no results store was written"
fi
echo "[gpu-check] done in $(($(date +%s) - start)) s; summary $out/gpu_check.md; exit status $status"
grep -v -P '\t(ok|passed)\t' "$out/steps.tsv" | sed 's/^/[gpu-check] not clean: /' || true
exit "$status"
