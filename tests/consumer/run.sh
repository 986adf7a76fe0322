#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, then configures, builds and runs the consumer
# project against it with find_package(torch_rational). When the build has rational_train, the
# installed one must start without LD_LIBRARY_PATH (RUNPATH), also after the prefix moved.
# Args: BUILD_DIR WORK_DIR TORCH_PREFIX
set -euo pipefail
BUILD_DIR="$1"; WORK="$2"; TORCH_PREFIX="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rm -rf "$WORK"; mkdir -p "$WORK"
cmake --install "$BUILD_DIR" --prefix "$WORK/prefix" >/dev/null

if [ -x "$BUILD_DIR/rational_train" ]; then
  BIN="$WORK/prefix/bin/rational_train"
  [ -x "$BIN" ] || { echo "FAIL: the build has rational_train but the install has no $BIN" >&2; exit 1; }
  readelf -d "$BIN" | grep -E "RUNPATH|RPATH" || true
  env -u LD_LIBRARY_PATH "$BIN" --help > "$WORK/help.txt" \
    || { echo "FAIL: the installed rational_train --help exited $?" >&2; exit 1; }
  grep -q -- "--activation" "$WORK/help.txt" || { echo "FAIL: installed --help lacks --activation" >&2; exit 1; }
  # $ORIGIN-relative: the prefix moved elsewhere still works.
  mv "$WORK/prefix" "$WORK/moved-prefix"
  env -u LD_LIBRARY_PATH "$WORK/moved-prefix/bin/rational_train" --help > /dev/null \
    || { echo "FAIL: rational_train of a moved prefix does not start" >&2; exit 1; }
  mv "$WORK/moved-prefix" "$WORK/prefix"
  echo "consumer: installed rational_train --help runs (also from a moved prefix)"
fi

GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
cmake -S "$HERE" -B "$WORK/build" "${GEN[@]}" -DCMAKE_PREFIX_PATH="$WORK/prefix;$TORCH_PREFIX/share/cmake" >/dev/null
cmake --build "$WORK/build" >/dev/null
"$WORK/build/consumer"
