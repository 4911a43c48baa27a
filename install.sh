#!/usr/bin/env bash
# Install mamkpd and everything its tests need.   ./install.sh          CPU machine (torch CPU build)
#                                                  ./install.sh --cuda   GPU machine (+ mamba-ssm from source)
# On a machine whose pip cannot see a CPU torch wheel, set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
pip() { "$PY" -m pip install --disable-pip-version-check "$@"; }

if [[ "${1:-}" == "--cuda" ]]; then
    pip "torch==2.13.0"
else
    # the CPU build: a plain `torch` would pull a CUDA build of several GB
    pip "torch==2.13.0+cpu"
fi
# xtcocotools' wheel is built against numpy 1.x and fails to import under numpy 2: build it here.
pip numpy cython setuptools wheel
pip --no-build-isolation --no-binary xtcocotools "xtcocotools==1.14.3"
pip -e ".[dev]"
if [[ "${1:-}" == "--cuda" ]]; then
    # released mamba-ssm sdists download a prebuilt wheel unless forced to build
    MAMBA_FORCE_BUILD=TRUE pip --no-build-isolation -e ".[cuda]"
fi
"$PY" -c "import mamkpd, xtcocotools.coco; print('mamkpd', mamkpd.__version__, 'installed')"
