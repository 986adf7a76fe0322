#!/usr/bin/env bash
# Compiles every file in kernels/ with nvcc for sm_80 and sm_90, so a kernel that does not compile
# fails CI even on a machine without a GPU (the kernels see no ATen, so no CUDA torch is needed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-$(command -v nvcc || true)}"
[ -x "${NVCC:-}" ] || for c in /usr/local/cuda/bin/nvcc /usr/local/bin/nvcc; do [ -x "$c" ] && NVCC="$c" && break; done
if [ -z "${NVCC:-}" ] || [ ! -x "$NVCC" ]; then
  if [ "${CI:-}" = "true" ]; then echo "check_kernels: nvcc not found (required in CI)" >&2; exit 1; fi
  echo "check_kernels: nvcc not found, skipping"; exit 0
fi
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
ARCH=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90)
fail=0; count=0
compile() {  # $1: source .cu
  count=$((count + 1))
  if "$NVCC" -std=c++17 -O2 "${ARCH[@]}" -I "$ROOT/kernels" -c "$1" -o "$OUT/$(basename "$1").o" 2>"$OUT/err"; then
    echo "  ok  ${1#$ROOT/}"
  else
    echo "  FAILED ${1#$ROOT/}"; cat "$OUT/err"; fail=1
  fi
}
echo "check_kernels: $("$NVCC" --version | tail -1)"
shopt -s nullglob
for f in "$ROOT"/kernels/*.cu; do compile "$f"; done
# Headers are compiled through a one-line translation unit each.
for f in "$ROOT"/kernels/*.cuh "$ROOT"/kernels/*.h; do
  tu="$OUT/$(basename "$f").cu"; echo "#include \"$f\"" >"$tu"; compile "$tu"
done
for f in "$ROOT"/tests/cuda/*.cu; do compile "$f"; done
echo "check_kernels: $count files, $([ $fail = 0 ] && echo 'all compiled' || echo 'FAILURES')"
exit $fail
