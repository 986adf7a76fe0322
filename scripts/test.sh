#!/usr/bin/env bash
# Runs every test: set-up and build (idempotent), the nvcc compile check of kernels/, the C++
# GoogleTest suite (ctest) and the Python suite (pytest). Exits non-zero on any failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/setup.sh"
BUILD_DIR="${TORCH_RATIONAL_BUILD_DIR:-$ROOT/build/cmake}"
JOBS="$(nproc)"

echo "== nvcc compile check of kernels/"
"$ROOT/scripts/check_kernels.sh"

echo "== C++ tests (ctest)"
ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure --timeout 900

echo "== Python tests (pytest)"
# Run from outside the source tree so the installed package is what gets imported.
cd "$ROOT/tests/python"
python3 -m pytest -q -p no:cacheprovider "$ROOT/tests/python" "$@"
