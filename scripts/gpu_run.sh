#!/usr/bin/env bash
# The one command to run on the GPU machine, from the repository root:
#   bash scripts/gpu_run.sh
# Configures and builds a CUDA build in build/gpu, runs ctest and pytest against it, then the GPU
# benchmarks, writing every log to "$OUT" (default ./gpu_out). No network is needed (no apt, no
# pip): it uses the installed torch (with CUDA) and nvcc. Every step runs even when an earlier one
# failed; the exit codes of all steps are summarised at the end (and in $OUT/summary.txt).
#
# Environment knobs: OUT, JOBS (build jobs, default nproc), TORCH_CUDA_ARCH_LIST (default 9.0:
# H100/H200; the build is one arch to keep it short), BENCH_MAX_LOG2 (default 28),
# PYTEST_ARGS (extra pytest arguments), SKIP_FULL_PYTEST=1 (only tests/python/test_cuda.py),
# RUN_CHECK_KERNELS=1 (also the nvcc compile check of scripts/check_kernels.sh),
# STEPS=a,b,... (only these of: build, ctest, pytest_cuda, pytest_all, bench, vgg; e.g. when one
# session may run at most 10 minutes per command: STEPS=build, then STEPS=pytest_cuda, ...).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu_out}"
mkdir -p "$OUT"
BUILD="$ROOT/build/gpu"
JOBS="${JOBS:-$(nproc)}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
declare -a STEP_NAMES=() STEP_RCS=()

want() { [ -z "${STEPS:-}" ] || [[ ",$STEPS," == *",$1,"* ]]; }

step() {  # step NAME TIMEOUT_S command...: runs it with a log in $OUT/NAME.log, records rc
  local name="$1" limit="$2"; shift 2
  echo "== [$(date -u +%H:%M:%S)] $name: $*" | tee -a "$OUT/steps.log"
  local t0=$SECONDS
  timeout --kill-after=30 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  STEP_NAMES+=("$name"); STEP_RCS+=("$rc")
  echo "   rc=$rc in $((SECONDS - t0)) s (log: $OUT/$name.log)" | tee -a "$OUT/steps.log"
  tail -n 5 "$OUT/$name.log" | sed 's/^/   | /'
  return 0
}

{
  echo "date: $(date -u)"; uname -a
  nvidia-smi || true
  command -v nvcc && nvcc --version || /usr/local/cuda/bin/nvcc --version || true
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "", "arch list", torch.cuda.get_arch_list())' || true
  git -C "$ROOT" log --oneline -1 || true
} >"$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

# nvcc is not always on PATH; CMake finds it through CUDACXX.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc PATH="/usr/local/cuda/bin:$PATH"
fi

TESTING=ON
if [ ! -f /usr/src/googletest/CMakeLists.txt ] && ! ls /usr/lib*/cmake/GTest /usr/lib/*/cmake/GTest >/dev/null 2>&1; then
  TESTING=OFF
  echo "googletest not found: configuring with -DBUILD_TESTING=OFF (no ctest)" | tee -a "$OUT/steps.log"
fi
GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"

if [ "${RUN_CHECK_KERNELS:-0}" = "1" ]; then
  step check_kernels 900 bash scripts/check_kernels.sh
fi
if want build; then
step configure 300 cmake -S "$ROOT" -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DWITH_CUDA=ON \
  -DBUILD_TESTING="$TESTING" -DBUILD_TRAINING=OFF -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DTORCH_CUDA_ARCH_LIST="$TORCH_CUDA_ARCH_LIST"
step build 1500 cmake --build "$BUILD" -j "$JOBS"
fi

LIB="$BUILD/libtorch_rational.so"
export TORCH_RATIONAL_LIBRARY="$LIB" PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"

if [ "$TESTING" = ON ] && want ctest; then
  # The CUDA gtests first (quick to read), then everything (the consumer test installs and
  # configures an outside project; it is slow but cheap in GPU terms).
  step ctest_cuda 600 ctest --test-dir "$BUILD" -R 'Cuda' --output-on-failure --timeout 600
  step ctest_all 1200 ctest --test-dir "$BUILD" -j 8 --output-on-failure --timeout 900
fi

if want pytest_cuda; then
# shellcheck disable=SC2086
step pytest_cuda 1200 python3 -m pytest -q -p no:cacheprovider -rs tests/python/test_cuda.py ${PYTEST_ARGS:-}
fi
if [ "${SKIP_FULL_PYTEST:-0}" != "1" ] && want pytest_all; then
  # shellcheck disable=SC2086
  step pytest_all 2400 python3 -m pytest -q -p no:cacheprovider tests/python ${PYTEST_ARGS:-}
fi

want bench && step benchmark_gpu 1200 python3 scripts/benchmark_gpu.py --device cuda --max-log2 "${BENCH_MAX_LOG2:-28}" \
  --markdown "$OUT/benchmark_gpu.md"
want vgg && step benchmark_vgg_step 600 python3 scripts/benchmark_vgg_step.py --device cuda --markdown "$OUT/benchmark_vgg_step.md"

{
  echo "step rc"
  for i in "${!STEP_NAMES[@]}"; do echo "${STEP_NAMES[$i]} ${STEP_RCS[$i]}"; done
} | column -t | tee "$OUT/summary.txt"
fail=0
for rc in "${STEP_RCS[@]}"; do [ "$rc" = 0 ] || fail=1; done
exit $fail
