#!/usr/bin/env bash
# The GPU check: one prepared run on a bare CUDA machine (CUDA torch, triton, numpy, pandas; no network, no
# mamba-ssm), under 8 minutes on one GPU. See README.md, "Checking a GPU machine".
#   scripts/gpu_check.sh [--wheels DIR] OUT_DIR     on a CUDA machine (DIR: from scripts/make_wheelhouse.sh)
#   scripts/gpu_check.sh --dry-run [--wheels DIR] OUT_DIR   every step on the CPU at tiny sizes (tests/test_gpu_check.py;
#                                                   scripts/simulate_bare_gpu_machine.sh plays a bare machine)
# Steps: the suite's missing dependencies from --wheels, the suite itself (both offline, into a throwaway prefix
# on PYTHONPATH: the Python that runs the check is left as it was, torch never reinstalled), the `gpu`-marked
# tests, then the harness (python -m mamkpd.cli.gpu_check: scan kernels, Table 2's models, one training step,
# each part in its own process under a budget), then the report. Every step runs under its budget
# (mamkpd/harness/gpu_check.py, check_budgets: the scan cells' floor first) and prints its time against it;
# everything lands in OUT_DIR; a step skipped or failed prints its reason. The exit status is non-zero only
# when the tests fail or a step breaks, never for a goal missed.
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
wheels=${wheels:+$(realpath "$wheels")}
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
# every step's budget: "STEP<TAB>seconds at most<TAB>seconds the later steps keep" (one table, in the harness)
mode=()
[[ $dry == 1 ]] && mode=(--dry-run)
if ! budgets=$(PYTHONPATH="$PWD" "$PY" -m mamkpd.cli.gpu_check --budgets "${mode[@]}" 2>&1); then
    echo "gpu_check.sh: the step budgets could not be read: $(tail -n 1 <<<"$budgets")" >&2
    exit 1
fi
declare -A cap keep
while IFS=$'\t' read -r name seconds later; do
    cap[$name]=$seconds
    keep[$name]=$later
done <<<"$budgets"
mkdir -p "$out"
: >"$out/steps.tsv"
elapsed() { echo $(($(date +%s) - start)); }
# seconds STEP may take from now: its budget, or what is left less the later steps' floors
limit() {
    local left=$((cap[total] - $(elapsed) - keep[$1]))
    echo $((left < cap[$1] ? left : cap[$1]))
}
step_start=$start
step_limit=0
begin() { step_start=$(date +%s); step_limit=$(limit "$1"); }
step() {  # step NAME STATUS DETAIL: one line of the summary's "Steps" table, with its time against its budget
    local took="$(($(date +%s) - step_start)) s of its ${step_limit} s"
    printf '%s\t%s\t%s\n' "$1" "$2" "$took${3:+; $3}" >>"$out/steps.tsv"
    echo "[gpu-check] $1 $2 ($took)${3:+: $3}"
}
# why a step stopped, from its log: the last line that says something (a traceback's innermost frame where the
# step was stopped), never nothing
reason() {
    local line
    line=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | sed -E 's/^=+ *//; s/ *=+$//' | cut -c 1-300)
    echo "${line:-no output in $(basename "$1")}"
}
# run NAME LOG COMMAND...: COMMAND under the step's limit, its output appended to LOG; status 124 when stopped
run() {
    local name=$1 log=$2
    shift 2
    if [[ $step_limit -lt 5 ]]; then
        echo "only $step_limit s left for $name (the later steps keep theirs)" >>"$log"
        return 124
    fi
    timeout "$step_limit" "$@" >>"$log" 2>&1
}
stopped() { echo "stopped at its ${step_limit} s budget while: $(reason "$1")"; }
status=0

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv >"$out/gpu.txt" 2>&1
fi

# the suite and its dependencies go into a throwaway prefix, found through PYTHONPATH after the checkout (whose
# code the children import, installed or not): its metadata registers the baselines' models (entry points)
site=$(mktemp -d)
trap 'rm -rf "$site" </dev/null &>/dev/null &' EXIT  # in the background: tens of seconds on a busy machine, none of the check's
site_paths=$("$PY" -c 'import sys, sysconfig
paths = {sysconfig.get_path(k, vars={"base": sys.argv[1], "platbase": sys.argv[1]}) for k in ("purelib", "platlib")}
print(":".join(sorted(paths)))' "$site")
export PYTHONPATH="$PWD:$site_paths${PYTHONPATH:+:$PYTHONPATH}"
export MAMKPD_RESULTS="$out/results.csv"
pip_install=("$PY" -m pip install --disable-pip-version-check --no-index --no-build-isolation --prefix "$site")
: >"$out/install.log"

# 1. the suite's dependencies that do not import here (setuptools: the suite's build backend): from --wheels where
# given (scripts/make_wheelhouse.sh makes the folder), else listed (none is on the FPS path)
missing_dependencies() {
    "$PY" - <<'EOF'
import importlib.util
modules = {"numpy": "numpy", "pandas": "pandas", "scipy": "scipy", "opencv-python-headless": "cv2",
           "pycocotools": "pycocotools", "fvcore": "fvcore", "matplotlib": "matplotlib", "tqdm": "tqdm",
           "filelock": "filelock", "onnx": "onnx", "onnxscript": "onnxscript", "onnxruntime": "onnxruntime",
           "nvidia-ml-py": "pynvml", "numba": "numba", "pytest": "pytest", "triton": "triton",
           "setuptools": "setuptools"}
print(" ".join(d for d, m in modules.items() if importlib.util.find_spec(m) is None))
EOF
}
begin dependencies
missing=$(missing_dependencies)
if [[ -n $missing && -n $wheels ]]; then
    # every wheel of the folder whose project this Python lacks, as it is (no resolution: nothing installed is
    # ever upgraded or uninstalled); in one pip call, else one at a time so that a bad wheel stops only itself
    mapfile -t to_install < <("$PY" -c 'import importlib.metadata, pathlib, re, sys
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    try:
        importlib.metadata.distribution(re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]))
    except importlib.metadata.PackageNotFoundError:
        print(wheel)' "$wheels")
    echo "== ${#to_install[@]} wheels from $wheels" >>"$out/install.log"
    rc=0
    if [[ ${#to_install[@]} -gt 0 ]]; then
        run dependencies "$out/install.log" "${pip_install[@]}" --no-deps --ignore-installed "${to_install[@]}"
        rc=$?
    fi
    if [[ $rc != 0 && $rc != 124 ]]; then
        deadline=$((step_start + step_limit))
        for wheel in "${to_install[@]}"; do
            step_limit=$((deadline - $(date +%s)))
            run dependencies "$out/install.log" "${pip_install[@]}" --no-deps --ignore-installed "$wheel"
            rc=$?
            [[ $rc == 124 ]] && break
        done
        step_limit=$((deadline - step_start))
    fi
    still=$(missing_dependencies)
    if [[ $rc == 124 ]]; then
        step dependencies stopped "$(stopped "$out/install.log"); still missing: $still"
    elif [[ -z $still ]]; then
        step dependencies ok "installed from $wheels: $missing"
    else
        step dependencies partial "still missing after installing from $wheels: $still ($(reason "$out/install.log"))"
    fi
elif [[ -n $missing ]]; then
    step dependencies absent "$missing (none is imported on the check's path; give --wheels DIR to install them)"
else
    step dependencies ok "every one imports here"
fi

# 2. the suite: offline, no dependencies, no build isolation (the build a bare machine must do); an installed
# mamkpd is left where it is (--ignore-installed: pip would otherwise uninstall it from this Python)
begin install
echo "== mamkpd" >>"$out/install.log"
run install "$out/install.log" "${pip_install[@]}" --no-deps --ignore-installed -e .
rc=$?
if [[ $rc == 0 ]]; then  # the baselines' models register through the installed metadata's entry points
    run install "$out/install.log" "$PY" -c 'from mamkpd.models import list_models
print("registered:", " ".join(list_models()))'
    rc=$?
    registered=$(grep '^registered:' "$out/install.log" | grep -cw hrnet_w32)
fi
case $rc in
    0) if [[ $registered == 0 ]]; then
           step install failed "hrnet_w32 is not registered: $(reason "$out/install.log")"; status=1
       else
           step install ok "pip install --no-deps -e . into a throwaway prefix; hrnet_w32 and the other models registered"
       fi ;;
    124) step install stopped "$(stopped "$out/install.log")"; status=1 ;;
    *) step install failed "$(reason "$out/install.log") (install.log)"; status=1 ;;
esac

# 3. the gpu-marked tests, from the modules that hold them (the others may import what a bare machine lacks);
# addopts reset: pytest-benchmark may be absent; -v names each test before it runs (a stopped run's last line).
# Their compiled Triton kernels stay cached for step 4.
begin tests
mapfile -t gpu_tests < <(grep -l -E 'mark\.gpu|requires_cuda' tests/test_*.py)
: >"$out/gpu-tests.log"
# MAMKPD_TRITON_AUTOTUNE=0: one compile per launch key, not one per config (test_every_gpu_config runs each)
MAMKPD_TRITON_AUTOTUNE=0 run tests "$out/gpu-tests.log" "$PY" -m pytest "${gpu_tests[@]}" -m gpu -v -p no:cacheprovider -o addopts=-ra \
    --durations=10 --continue-on-collection-errors --junitxml="$out/gpu-tests.xml"
rc=$?
summary=$(reason "$out/gpu-tests.log")
case $rc in
    0) step tests passed "$summary" ;;
    5) step tests "none ran" "no gpu-marked test ran: $summary" ;;
    124) step tests stopped "$(stopped "$out/gpu-tests.log") (gpu-tests.log)"; status=1 ;;
    *) step tests failed "$summary (gpu-tests.log)"; status=1 ;;
esac

# 4. the harness: scan kernels, model speed, training step (its own budgets within what is left; it writes
# its steps' times into gpu_check.md)
begin harness
harness_s=$((cap[total] - $(elapsed) - keep[train]))  # what is left less the report's floor
if [[ $harness_s -lt 30 ]]; then
    step harness skipped "only ${harness_s} s left of the check's ${cap[total]} s"
    status=1
else
    args=("$out" --seconds "$harness_s" "${mode[@]}")
    timeout $((harness_s + 20)) "$PY" -m mamkpd.cli.gpu_check "${args[@]}" 2>&1 | tee "$out/harness.log"
    rc=${PIPESTATUS[0]}
    step_limit=$harness_s
    case $rc in
        0) ;;
        124) step harness stopped "$(stopped "$out/harness.log")"; status=1 ;;
        *) step harness failed "exit status $rc: $(reason "$out/harness.log") (harness.log)"; status=1 ;;
    esac
fi

# 5. the report from the store: the report layer directly (the command line imports the data layer, OpenCV,
# absent on a bare machine); a stopped report prints where it was (faulthandler's traceback, innermost last)
begin report
if [[ -s $out/results.csv ]]; then
    : >"$out/report.log"
    run report "$out/report.log" "$PY" -c 'import faulthandler, sys
faulthandler.dump_traceback_later(max(float(sys.argv[3]) - 3, 1), exit=True)
from mamkpd.report import write_report
print("writing the report from", sys.argv[1], flush=True)
write_report(sys.argv[1], sys.argv[2])
print("wrote", sys.argv[2])' "$out/results.csv" "$out/report" "$step_limit"
    rc=$?
    last_frame=$(grep -o 'File "[^"]*", line [0-9]* in .*' "$out/report.log" | tail -n 1)
    if [[ $rc == 0 ]]; then
        step report ok "$out/report/REPORT.md"
    elif grep -q "^Timeout" "$out/report.log" || [[ $rc == 124 ]]; then
        step report stopped "stopped at its ${step_limit} s budget while in ${last_frame:-$(reason "$out/report.log")}"
        status=1
    elif missing_module=$(grep -o -m 1 "No module named '[^']*'\|import of [^ ]* halted" "$out/report.log"); then
        # the report's findings reach the evaluation and data layers (pycocotools, OpenCV): --wheels DIR brings them
        step report skipped "$missing_module; gpu_check.md holds every figure of the check"
    else
        step report failed "$(reason "$out/report.log") (report.log)"
        status=1
    fi
else
    step report skipped "no results store was written"
fi
echo "[gpu-check] done in $(elapsed) s of ${cap[total]} s; summary $out/gpu_check.md; exit status $status"
grep -v -P '\t(ok|passed|done)\t' "$out/steps.tsv" | sed 's/^/[gpu-check] not clean: /' || true
exit "$status"
