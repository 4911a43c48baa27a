#!/usr/bin/env bash
# The Triton kernels under the oldest and the newest Triton a supported torch ships (pyproject.toml's `gpu`
# extra states the range): for each, a throwaway venv over the current environment (its torch, numpy and
# the suite) with only triton replaced, then the compile check for sm_80, sm_89 and sm_90 and the
# interpreter tests. CPU only, about 2 CPU-minutes a version. Run nightly (scripts/nightly_gpu.sh) and by
# `tox -e triton-versions`, not in the per-commit CI (a second triton download and test run each).
#
#   scripts/triton_versions.sh [VERSION ...]      default: 3.0.0 (torch 2.4's pin) and 3.9.0
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VERSIONS=("$@")
[[ ${#VERSIONS[@]} -gt 0 ]] || VERSIONS=(3.0.0 3.9.0)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
status=0
for version in "${VERSIONS[@]}"; do
    venv="$WORK/triton-$version"
    "$PYTHON" -m venv --system-site-packages "$venv"
    "$venv/bin/pip" install -q --no-deps "triton==$version"
    if [[ "$version" == 3.0.* ]]; then
        # Triton 3.0's interpreter predates numpy 2 (under it every load reads garbage); torch 2.4 had numpy 1
        "$venv/bin/pip" install -q --no-deps "numpy<2"
    fi
    echo "[triton-versions] triton $version: compile for sm_80, sm_89, sm_90"
    env -u TRITON_INTERPRET PYTHONPATH="$PWD" "$venv/bin/python" tests/triton_gpu_compile.py || status=1
    echo "[triton-versions] triton $version: interpreter tests"
    # the CPU variants only (TRITON_INTERPRET set: on a GPU runner the gpu variants would run interpreted)
    TRITON_INTERPRET=1 PYTHONPATH="$PWD" "$venv/bin/python" -m pytest tests/test_ops_triton.py -q -m "not gpu" \
        -p no:cacheprovider --deselect tests/test_ops_triton.py::test_kernels_compile_for_a_gpu || status=1
done
exit "$status"
