#!/usr/bin/env bash
# CI's first CUDA check, for machines without a GPU: compiles every file in kernels/ (and
# tests/cuda/*.cu, which instantiate them) with nvcc for sm_80 and sm_90, so a kernel that does not
# compile fails CI (the kernels see no ATen); tests/cuda/*_host_test.cu are built and run on the
# host (element math, no GPU needed).
# The ATen glue csrc/ops/cuda/*.cu is compiled by scripts/check_registers.py (against the CPU
# torch's headers, for sm_90, to read ptxas's report) and by scripts/check_cuda_build.sh (the real
# CUDA build). ARCHS="80 90" picks the architectures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-$(command -v nvcc || true)}"
[ -x "${NVCC:-}" ] || for c in /usr/local/cuda/bin/nvcc /usr/local/bin/nvcc; do [ -x "$c" ] && NVCC="$c" && break; done
if [ -z "${NVCC:-}" ] || [ ! -x "$NVCC" ]; then
  if [ "${CI:-}" = "true" ]; then echo "check_kernels: nvcc not found (required in CI)" >&2; exit 1; fi
  echo "check_kernels: nvcc not found, skipping"; exit 0
fi
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT
ARCH=()
for a in ${ARCHS:-80 90}; do ARCH+=(-gencode "arch=compute_$a,code=sm_$a"); done
fail=0; count=0
# Compiles run in parallel (JOBS, default: the number of cores) through ccache when it is there;
# results are printed in submission order once all are done.
JOBS="${JOBS:-$(nproc)}"
LAUNCH=("$NVCC")
if command -v ccache >/dev/null 2>&1 && [ "${NO_CCACHE:-0}" != "1" ]; then LAUNCH=(ccache "$NVCC"); fi
NAMES=()
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done; }
compile() {  # $1: source .cu, rest: extra flags; $SHOW: name to print (default: the source)
  local src="$1"; shift
  local id="$count"
  count=$((count + 1)); NAMES+=("${SHOW:-${src#$ROOT/}}")
  throttle
  ( if "${LAUNCH[@]}" -std=c++17 -O2 "$@" -I "$ROOT/kernels" -c "$src" -o "$OUT/$id.o" >"$OUT/$id.err" 2>&1; then
      echo ok >"$OUT/$id.status"; else echo FAILED >"$OUT/$id.status"; fi ) &
}
report() {  # waits for every compile, then prints them in order
  wait
  local i
  for i in "${!NAMES[@]}"; do
    if [ "$(cat "$OUT/$i.status" 2>/dev/null)" = ok ]; then echo "  ok  ${NAMES[$i]}"
    else echo "  FAILED ${NAMES[$i]}"; cat "$OUT/$i.err"; fail=1; fi
  done
  NAMES=()
}
echo "check_kernels: $("$NVCC" --version | tail -1)"
shopt -s nullglob
for f in "$ROOT"/kernels/*.cu; do compile "$f" "${ARCH[@]}"; done
# Headers are compiled through a one-line translation unit each.
for f in "$ROOT"/kernels/*.cuh "$ROOT"/kernels/*.h; do
  tu="$OUT/tu_$(basename "$f").cu"; echo "#include \"$f\"" >"$tu"; SHOW="${f#$ROOT/}" compile "$tu" "${ARCH[@]}"
done
for f in "$ROOT"/tests/cuda/*.cu; do
  case "$f" in *_host_test.cu) continue ;; esac
  compile "$f" "${ARCH[@]}"
done
report
# Host tests: device-capable math run on the host (no GPU needed), built and run.
for f in "$ROOT"/tests/cuda/*_host_test.cu; do
  count=$((count + 1))
  exe="$OUT/$(basename "$f" .cu)"
  if "$NVCC" -std=c++17 -O2 -arch=sm_90 -I "$ROOT/kernels" "$f" -o "$exe" 2>"$OUT/err" && "$exe" >"$OUT/run" 2>&1; then
    echo "  ok  ${f#$ROOT/} (built and ran: $(tail -1 "$OUT/run"))"
  else
    echo "  FAILED ${f#$ROOT/}"; cat "$OUT/err" "$OUT/run" 2>/dev/null; fail=1
  fi
done

echo "check_kernels: $count files, $([ $fail = 0 ] && echo 'all compiled' || echo 'FAILURES')"
exit $fail
