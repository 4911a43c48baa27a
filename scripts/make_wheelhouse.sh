#!/usr/bin/env bash
# The wheels the GPU check installs offline on a bare CUDA machine (scripts/gpu_check.sh --wheels DIR), made
# on a networked one: every dependency of the suite and pytest, with theirs, as wheels (sdists such as fvcore's
# and iopath's are built into wheels here, where their build requirements can be fetched); no torch, triton or
# numpy (the GPU machine's CUDA torch brings them, matched to its driver).
#   scripts/make_wheelhouse.sh DIR [--python-version X.Y]    X.Y: the GPU machine's Python (default: this one's)
# Versions are resolved with this Python; for another X.Y the compiled wheels are fetched at those versions
# for X.Y on manylinux x86_64 (pure-Python ones serve any version). Ends with one line: what is in DIR, or
# what could not be had.
set -euo pipefail
PY=${PYTHON:-python3}
dir=""
version=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python-version) version=${2:?--python-version needs X.Y}; shift ;;
        -*) echo "make_wheelhouse.sh: unknown option '$1' (use --python-version X.Y)" >&2; exit 2 ;;
        *) dir=$1 ;;
    esac
    shift
done
if [[ -z $dir ]]; then
    echo "usage: scripts/make_wheelhouse.sh DIR [--python-version X.Y]" >&2
    exit 2
fi
dir=$(realpath -m "$dir")  # DIR as given from where it was run
cd "$(dirname "$0")/.."
here=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
version=${version:-$here}
if [[ ! $version =~ ^3\.[0-9]+$ ]]; then
    echo "make_wheelhouse.sh: --python-version must be X.Y (such as 3.11), got '$version'" >&2
    exit 2
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the suite's dependencies (pyproject.toml), its build backend (gpu_check.sh builds the suite without build
# isolation: a Python 3.12 venv has no setuptools) and pytest, less what the GPU machine's torch brings
"$PY" - >"$work/requirements.txt" <<'EOF'
import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    pyproject = tomllib.load(f)
project = pyproject["project"]
brought_by_torch = {"torch", "triton", "numpy"}
pytest = [r for r in project["optional-dependencies"]["dev"] if r.startswith("pytest>")]
for requirement in project["dependencies"] + pyproject["build-system"]["requires"] + pytest:
    if re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() not in brought_by_torch:
        print(requirement)
EOF

pip() { "$PY" -m pip --disable-pip-version-check "$@"; }
# every requirement and its dependencies as wheels for this Python: sdists are built here
if ! pip wheel --quiet --prefer-binary --wheel-dir "$work/wheels" -r "$work/requirements.txt" >"$work/pip.log" 2>&1; then
    echo "make_wheelhouse.sh: pip could not build or fetch every wheel: $(grep -m 1 -i 'error' "$work/pip.log" || tail -n 1 "$work/pip.log")" >&2
    exit 1
fi
rm -f "$work"/wheels/{torch,triton,numpy}-*.whl
missing=()
for wheel in "$work"/wheels/*.whl; do
    name=$(basename "$wheel")
    if [[ $version == "$here" || $name == *-none-any.whl ]]; then
        cp "$wheel" "$dir/"
        continue
    fi
    # compiled for this Python: the same version for X.Y
    IFS=- read -r project release _ <<<"$name"
    if ! pip download --quiet --no-deps --only-binary :all: --python-version "$version" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$dir" "$project==$release" >>"$work/pip.log" 2>&1; then
        missing+=("$project==$release")
    fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "make_wheelhouse.sh: no wheel for Python $version of: ${missing[*]}" >&2
    exit 1
fi
echo "make_wheelhouse.sh: $(find "$dir" -maxdepth 1 -name '*.whl' | wc -l) wheels in $dir for Python $version (no torch, triton, numpy)"
