#!/usr/bin/env bash
# Install mamkpd and everything its tests need.
#   ./install.sh                            CPU machine (torch CPU build)
#   ./install.sh --cuda                     GPU machine (torch CUDA build; its triton runs the `triton` scan backend)
#   ./install.sh --cuda --with-mamba-ssm    ... and mamba-ssm's CUDA kernel, the reference `cuda` backend, built
#                                           from source: 10-30 minutes with ninja on a many-core machine, longer
#                                           on few cores (MAX_JOBS limits its parallel compiles)
# On a machine whose pip cannot see a CPU torch wheel, set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
pip() { "$PY" -m pip install --disable-pip-version-check "$@"; }

cuda=0
mamba_ssm=0
for arg in "$@"; do
    case "$arg" in
        --cuda) cuda=1 ;;
        --with-mamba-ssm) mamba_ssm=1 ;;
        *) echo "install.sh: unknown option '$arg' (use --cuda, --with-mamba-ssm)" >&2; exit 2 ;;
    esac
done
if [[ $mamba_ssm == 1 && $cuda == 0 ]]; then
    echo "install.sh: --with-mamba-ssm builds a CUDA extension: use it with --cuda on a GPU machine" >&2
    exit 2
fi

if [[ $cuda == 1 ]]; then
    pip "torch==2.13.0"
else
    # the CPU build: a plain `torch` would pull a CUDA build of several GB
    pip "torch==2.13.0+cpu"
fi
# xtcocotools' wheel is built against numpy 1.x and fails to import under numpy 2: build it here.
pip numpy cython setuptools wheel
pip --no-build-isolation --no-binary xtcocotools "xtcocotools==1.14.3"
# ortx: onnxruntime-extensions for custom-op ONNX exports (a 2.6 MB wheel, no dependencies: seconds)
pip -e ".[dev,ortx]"
# numba compiles the CPU scan's kernels on first use (tens of seconds on a loaded 2-core machine): compile them
# now into numba's cache (next to the source, or ~/.cache/numba), so that a fresh install's first MamKPD
# forward loads them. float32 serves float32, float16 and bfloat16 models; float64 compiles on its first use.
warm_start=$SECONDS
"$PY" -c "from mamkpd.ops.scan_numba import warm_cache; warm_cache()" \
    && echo "install.sh: numba scan kernels compiled into numba's cache ($((SECONDS - warm_start)) s)" \
    || echo "install.sh: could not warm numba's cache; the first CPU scan compiles its kernels instead" >&2
# The sdists of the mamba-ssm releases the `cuda` extra admits: tests/test_ops_cuda.py runs their Python interface
# on CPU through a stand-in kernel (nothing is built; seconds). Offline, that test skips and says why.
sdists=${MAMKPD_MAMBA_SSM_SDISTS:-$HOME/.cache/mamkpd/mamba-ssm}
while read -r release; do
    [[ -f $sdists/mamba_ssm-$release.tar.gz ]] && continue
    MAMBA_SKIP_CUDA_BUILD=TRUE "$PY" -m pip download --disable-pip-version-check --quiet --no-deps \
        --no-binary :all: --no-build-isolation -d "$sdists" "mamba-ssm==$release" \
        || echo "install.sh: could not download mamba-ssm $release's sdist; its stand-in test will skip" >&2
done < scripts/mamba_ssm_releases.txt
if [[ $mamba_ssm == 1 ]]; then
    # released mamba-ssm sdists download a prebuilt wheel unless forced to build; ninja parallelises the build.
    # (mamba-ssm's unreleased main makes the build opt-in with MAMBA_KEEP_CUDA_BUILD=TRUE; the pinned releases
    # do not read it)
    pip ninja
    MAMBA_FORCE_BUILD=TRUE pip --no-build-isolation -e ".[cuda]"
fi
"$PY" -c "import mamkpd, xtcocotools.coco; print('mamkpd', mamkpd.__version__, 'installed')"
