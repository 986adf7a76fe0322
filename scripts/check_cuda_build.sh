#!/usr/bin/env bash
# CUDA build parity on a machine without a GPU (CI runs it through scripts/test.sh):
#  1. a virtual environment (cached in ~/.cache/torch_rational) with the GPU machine's torch,
#     torch==2.11.0 from PyPI: the cu130 build with its nvidia-* runtime packages, which imports
#     without a GPU. 2.11 is also the oldest torch the project supports;
#  2. the project's one CMake build configured against it with WITH_CUDA=ON and the local nvcc
#     (TORCH_CUDA_ARCH_LIST 8.0;9.0) in build/cuda, with rational_train and its NCCL process group
#     (RATIONAL_TRAIN_NCCL=ON: the only build that compiles that path); what a compiler-only toolkit
#     lacks (libnvrtc, nccl.h, cusparse.h) CMake takes from torch's pip packages; then `pip install`
#     of the package into the venv (setup.py drives the same build directory, nothing is compiled twice);
#  3. in that venv: every op has CPU, CUDA, Autograd and Meta kernels (tests/python/
#     test_registration.py with TORCH_RATIONAL_EXPECT_CUDA=1), then the CPU pytest suite under
#     torch 2.11 (the CUDA cases skip without a GPU);
#  4. the GPU artifact for scripts/gpu_run.sh (scripts/pack_gpu_artifact.sh): the library, the
#     C++ test binaries and rational_train, so the GPU machine builds nothing.
# Knobs: CUDA_TORCH_VERSION (2.11.0), TORCH_RATIONAL_CUDA_VENV, TORCH_RATIONAL_CUDA_BUILD_DIR
# (build/cuda), TORCH_CUDA_ARCH_LIST (8.0;9.0), PYTEST_ARGS (extra pytest arguments),
# SKIP_CUDA_PYTEST=1 (steps 1, 2 and 4 only).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TORCH_VERSION="${CUDA_TORCH_VERSION:-2.11.0}"
# One venv per torch minor release.
VENV="${TORCH_RATIONAL_CUDA_VENV:-$HOME/.cache/torch_rational/venv-torch${TORCH_VERSION%.*}}"
BUILD_DIR="${TORCH_RATIONAL_CUDA_BUILD_DIR:-$ROOT/build/cuda}"
ARCHS="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"  # a fresh clone elsewhere still hits the cache
PY="$VENV/bin/python"

log() { printf '\033[1m[check_cuda_build %s]\033[0m %s\n' "$(date -u +%H:%M:%S)" "$*"; }

if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ] && [ -z "${CUDA_HOME:-}" ]; then
  if [ "${CI:-}" = "true" ]; then echo "check_cuda_build: nvcc not found (required in CI)" >&2; exit 1; fi
  echo "check_cuda_build: nvcc not found, skipping"; exit 0
fi

# --- 1. the venv ---------------------------------------------------------------------------------
venv_ok() {
  "$PY" - "$TORCH_VERSION" <<'EOF' >/dev/null 2>&1
import sys, torch, numpy, pytest, matplotlib, setuptools, wheel
sys.exit(0 if torch.__version__.split("+")[0] == sys.argv[1] and torch.version.cuda else 1)
EOF
}
if ! venv_ok; then
  log "creating $VENV with torch==$TORCH_VERSION (CUDA build from PyPI, about 3 GB)"
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --upgrade pip 2>&1 | grep -v "Running pip as the 'root' user" || true
  # setuptools + wheel: `pip install --no-build-isolation .` builds with the venv's own.
  "$PY" -m pip install -q "torch==$TORCH_VERSION" numpy pytest matplotlib setuptools wheel 2>&1 \
    | grep -v -e "Running pip as the 'root' user" -e "is ignored: it is neither a file nor a directory" || true
  venv_ok || { echo "check_cuda_build: the venv $VENV has no CUDA torch $TORCH_VERSION" >&2; exit 1; }
fi
log "torch $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)') in $VENV"

# --- 2. configure and build ------------------------------------------------------------------------
t0=$SECONDS
# Configured on every call (seconds), so a build directory from an older version of this script
# takes the current options.
log "configuring $BUILD_DIR (WITH_CUDA=ON, TORCH_CUDA_ARCH_LIST=$ARCHS, rational_train with NCCL)"
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DWITH_CUDA=ON -DBUILD_TESTING=ON -DBUILD_TRAINING=ON \
  -DRATIONAL_TRAIN_NCCL=ON -DBUILD_TRAINING_TESTS=OFF -DBUILD_EMULATED_CUDA_TESTS=OFF \
  -DTORCH_CUDA_ARCH_LIST="$ARCHS" -DPython3_EXECUTABLE="$PY" \
  -DCMAKE_PREFIX_PATH="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')" >/dev/null
log "building $BUILD_DIR (nvcc for $ARCHS; a cold build takes about 20 minutes on 2 cores)"
cmake --build "$BUILD_DIR" -j "$(nproc)"
log "built in $((SECONDS - t0)) s"
TORCH_RATIONAL_BUILD_DIR="$BUILD_DIR" "$PY" -m pip install -q --no-build-isolation --no-deps "$ROOT" 2>&1 \
  | grep -v "Running pip as the 'root' user" || true

# --- 3. registrations and the CPU suite under this torch -------------------------------------------
t0=$SECONDS
cd "$ROOT/tests/python"  # outside the source tree: the installed package is what gets imported
log "registered kernels (CPU, CUDA, Autograd, Meta) and meta tensors"
TORCH_RATIONAL_EXPECT_CUDA=1 "$PY" -m pytest -q -p no:cacheprovider test_registration.py
if [ "${SKIP_CUDA_PYTEST:-0}" != "1" ]; then
  log "pytest (CPU) under torch $TORCH_VERSION"
  # shellcheck disable=SC2086
  # Not the install tests: they build and install the package against the CPU torch's build directory.
  "$PY" -m pytest -q -p no:cacheprovider -m "not install" "$ROOT/tests/python" ${PYTEST_ARGS:-}
fi
log "tests in $((SECONDS - t0)) s"
cd "$ROOT"

# --- 4. the GPU artifact -------------------------------------------------------------------------------
bash "$ROOT/scripts/pack_gpu_artifact.sh" "$BUILD_DIR" "$PY"
