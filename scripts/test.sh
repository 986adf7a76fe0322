#!/usr/bin/env bash
# Runs every test: set-up and build (idempotent), the nvcc compile check of kernels/ and their
# register / spill budget, the C++ GoogleTest suite (ctest, with the emulated CUDA kernels plain and
# under ASan + UBSan), the Python suite (pytest), then the CUDA build against the GPU machine's torch
# (scripts/check_cuda_build.sh). Exits non-zero on any failure; each step prints its wall time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
BUILD_DIR="${TORCH_RATIONAL_BUILD_DIR:-$ROOT/build/cmake}"
JOBS="$(nproc)"

timed() {  # timed TITLE command...: runs it with a header and its wall time
  local title="$1" t0=$SECONDS; shift
  echo "== $title"
  "$@"
  echo "== $title: $((SECONDS - t0)) s"
}

timed "nvcc compile check of kernels/" "$ROOT/scripts/check_kernels.sh"
timed "register and spill budget of every CUDA kernel (sm_90)" python3 "$ROOT/scripts/check_registers.py"
timed "C++ tests (ctest)" ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure --timeout 900
# Run from outside the source tree so the installed package is what gets imported.
(cd "$ROOT/tests/python" && timed "Python tests (pytest)" python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/python" "$@")
# The suite above runs the vector kernels of the host's widest CPU capability; the narrower builds'
# (AVX2, DEFAULT: other lane counts, blend trees, tails) take the channel-walk and fused
# normalisation tests too.
for cap in avx2 default; do
  (cd "$ROOT/tests/python" && ATEN_CPU_CAPABILITY=$cap timed "Python layout tests, CPU capability $cap" \
    python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/python/test_layouts.py" "$ROOT/tests/python/test_era.py" \
    -k "pwlu or many_rows or bitwise or channel_walk or normalized_era")
done
timed "CUDA build against torch 2.11 (scripts/check_cuda_build.sh)" "$ROOT/scripts/check_cuda_build.sh"
