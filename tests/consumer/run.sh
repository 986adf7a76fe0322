#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures, builds and runs the consumer
# project against it with find_package(torch_rational). Args: BUILD_DIR WORK_DIR TORCH_PREFIX
set -euo pipefail
BUILD_DIR="$1"; WORK="$2"; TORCH_PREFIX="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$WORK"; mkdir -p "$WORK"
cmake --install "$BUILD_DIR" --prefix "$WORK/prefix" >/dev/null
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$HERE" -B "$WORK/build" "${GEN[@]}" -DCMAKE_PREFIX_PATH="$WORK/prefix;$TORCH_PREFIX/share/cmake" >/dev/null
cmake --build "$WORK/build" >/dev/null
"$WORK/build/consumer"
