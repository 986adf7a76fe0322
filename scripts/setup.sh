#!/usr/bin/env bash
# Idempotent set-up: system packages, Python packages, the CMake build (library, C++ tests), and the
# Python package installed into the active environment. Safe to run again; does only what's missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export DEBIAN_FRONTEND=noninteractive

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- system packages ---------------------------------------------------------------------------
apt_pkgs=(cmake ninja-build g++ ccache libgtest-dev zlib1g-dev dataset-fashion-mnist
          libcli11-dev nlohmann-json3-dev libfmt-dev libgloo-dev libturbojpeg0-dev libpng-dev)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Python packages -----------------------------------------------------------------------------
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  # The CPU build of 2.13.0 is on disk here; a bare `pip install torch` would pull CUDA wheels.
  log "pip install torch==2.13.0"
  "$PY" -m pip install -q torch==2.13.0
fi
for mod in numpy pytest matplotlib; do
  if ! "$PY" -c "import $mod" >/dev/null 2>&1; then
    log "pip install $mod"
    "$PY" -m pip install -q "$mod"
  fi
done

# --- build (CMake is the single build; setup.py drives the same directory) -----------------------
BUILD_DIR="${TORCH_RATIONAL_BUILD_DIR:-$ROOT/build/cmake}"
export TORCH_RATIONAL_BUILD_DIR="$BUILD_DIR"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
# Paths relative to the checkout in ccache's hashes: a fresh clone elsewhere still hits the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  log "configuring $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DBUILD_TESTING=ON \
    -DCMAKE_PREFIX_PATH="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')" \
    -DPython3_EXECUTABLE="$(command -v "$PY")" >/dev/null
fi
log "building (cmake --build $BUILD_DIR)"
cmake --build "$BUILD_DIR" -j "$(nproc)"

# --- install the Python package ------------------------------------------------------------------
log "pip install --no-build-isolation ."
"$PY" -m pip install -q --no-build-isolation --no-deps "$ROOT" 2>&1 | grep -v "Running pip as the 'root' user" || true
"$PY" -c "import torch_rational" || { echo "torch_rational failed to import after install" >&2; exit 1; }
log "torch_rational installed ($("$PY" -c 'import torch_rational, os; print(os.path.dirname(torch_rational.__file__))'))"
