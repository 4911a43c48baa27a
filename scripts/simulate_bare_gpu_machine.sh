#!/usr/bin/env bash
# Plays the bare GPU machine on a networked CPU one: a venv with only torch (this Python's build), triton
# (3.6, the lent GPU machines' release, unless --triton), numpy, pandas and pytest; the wheelhouse from
# scripts/make_wheelhouse.sh; then, offline (PIP_NO_INDEX=1, no pip configuration), the check as the machine
# runs it: scripts/gpu_check.sh --dry-run --wheels DIR. It passes when every step ran (none stopped, failed or
# skipped; the `gpu` tests skip for want of CUDA, which is all a CPU cannot run), every scan cell was measured,
# the report was written and the whole check took under 8 minutes. Ends with one line saying so, or what failed.
#   scripts/simulate_bare_gpu_machine.sh [--venv DIR] [--wheels DIR] [--triton X.Y.Z] OUT_DIR
# --venv DIR: the bare venv, made there if absent and reused after (the check changes nothing in it);
# --wheels DIR: a wheelhouse already made. Run nightly (.github/workflows/nightly-gpu.yml): on two busy cores the
# check took 203-347 s, the whole 11 minutes with a new venv and wheelhouse, which need the network: not in CI.
set -uo pipefail
PY=${PYTHON:-python3}
venv=""
wheels=""
triton_release=3.6.0
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) venv=${2:?--venv needs a folder}; shift ;;
        --wheels) wheels=${2:?--wheels needs a folder}; shift ;;
        --triton) triton_release=${2:?--triton needs a release such as 3.6.0}; shift ;;
        -*) echo "simulate_bare_gpu_machine.sh: unknown option '$1' (use --venv DIR, --wheels DIR, --triton X.Y.Z)" >&2; exit 2 ;;
        *) out=$1 ;;
    esac
    shift
done
if [[ -z $out ]]; then
    echo "usage: scripts/simulate_bare_gpu_machine.sh [--venv DIR] [--wheels DIR] [--triton X.Y.Z] OUT_DIR" >&2
    exit 2
fi
say() { echo "simulate_bare_gpu_machine.sh: $*"; }
out=$(realpath -m "$out")
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work" </dev/null &>/dev/null &' EXIT  # in the background: a venv with torch takes a minute
venv=$(realpath -m "${venv:-$work/venv}")
mkdir -p "$out"

# what the check installs itself: none may be in the bare venv
suite_only="import importlib.util, sys
names = ['scipy', 'cv2', 'pycocotools', 'fvcore', 'matplotlib', 'tqdm', 'onnx', 'onnxscript', 'onnxruntime',
         'pynvml', 'numba', 'mamkpd', 'baselines']
print(' '.join(n for n in names if importlib.util.find_spec(n) is not None))"
if [[ ! -x $venv/bin/python ]]; then
    torch_release=$("$PY" -c 'import torch; print(torch.__version__)') || { say "torch does not import with $PY"; exit 1; }
    say "making the bare venv $venv: torch $torch_release, triton $triton_release, numpy, pandas, pytest"
    if ! { "$PY" -m venv "$venv" && "$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        "torch==$torch_release" "triton==$triton_release" numpy pandas pytest; } >"$out/venv.log" 2>&1; then
        say "could not make the bare venv: $(grep -v '^WARNING' "$out/venv.log" | tail -n 1) (venv.log)"
        exit 1
    fi
fi
present=$(cd "$work" && PYTHONPATH="" "$venv/bin/python" -c "$suite_only")
if [[ -n $present ]]; then
    say "$venv is not bare: it has $present (give another --venv)"
    exit 1
fi
if [[ -z $wheels ]]; then
    wheels=$work/wheels
    PYTHON=$venv/bin/python scripts/make_wheelhouse.sh "$wheels" >"$out/wheelhouse.log" 2>&1 \
        || { say "no wheelhouse: $(tail -n 1 "$out/wheelhouse.log")"; exit 1; }
fi

# the machine: offline, no pip configuration (find-links, extra indexes), nothing on PYTHONPATH
start=$(date +%s)
env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT -u TRITON_INTERPRET \
    PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PYTHONPATH="" PYTHON="$venv/bin/python" \
    timeout 600 scripts/gpu_check.sh --dry-run --wheels "$wheels" "$out/check" 2>&1 | tee "$out/check.log"
rc=${PIPESTATUS[0]}
seconds=$(($(date +%s) - start))

# what the run must show
problems=()
[[ $rc == 0 ]] || problems+=("gpu_check.sh exited $rc")
[[ $seconds -lt 480 ]] || problems+=("it took $seconds s, not under 8 minutes")
not_clean=$(grep -v -P '\t(ok|passed|done)\t' "$out/check/steps.tsv" 2>/dev/null | cut -f 1,2 | tr '\t\n' ' ,')
[[ -z $not_clean ]] || problems+=("steps not clean: $not_clean")
grep -q '^install	ok' "$out/check/steps.tsv" 2>/dev/null || problems+=("the suite was not installed")
[[ -s $out/check/report/REPORT.md ]] || problems+=("no report/REPORT.md")
cells=$(grep -c '^kernels,.*,seconds_per_call,' "$out/check/results.csv" 2>/dev/null)
skipped=$("$venv/bin/python" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["skipped"]))' \
    "$out/check/gpu_check.json" 2>/dev/null || echo "an unknown number of")
[[ $skipped == 0 ]] || problems+=("$skipped cells skipped (gpu_check.md, Skipped)")
[[ ${cells:-0} -gt 0 ]] || problems+=("no scan cell measured")
if [[ ${#problems[@]} -gt 0 ]]; then
    say "FAILED after $seconds s: $(IFS=';'; echo "${problems[*]}" | sed 's/;/; /g')"
    exit 1
fi
say "passed in $seconds s (under 480): every step ran, $cells scan cells measured, none skipped, report written"
