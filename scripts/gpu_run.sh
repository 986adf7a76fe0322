#!/usr/bin/env bash
# The one GPU call. Build here first (scripts/check_cuda_build.sh, which CI runs too, leaves
# build/gpu-artifact), carry that folder to the GPU machine, and run from the repository root:
#   bash scripts/gpu_run.sh     # OUT=... (default ./gpu_out) receives run.log, results.json, verdict.txt
# It builds nothing and needs no network: the artifact's library and C++ test binaries, the installed
# torch (the one the artifact was built against: checked), python/ from the working tree. Steps, each
# under its own time limit; the limits add up to 9.5 minutes (570 s):
#   artifact  the artifact matches this working tree and this torch          (scripts/gpu_artifact.py)
#   gtest     the C++ tests (CUDA cases included) from the artifact's binaries
#   pytest    every CUDA case of tests/python (-k cuda): the float64 reference, CPU-vs-CUDA for every
#             op, dtype and layout, RPAU noise, bitwise determinism (two runs), gradcheck, opcheck,
#             torch.compile on CUDA; and the kernel registrations (test_registration.py)
#   bench     scripts/benchmark_gpu.py: ours vs eager vs torch.compile vs the clone/add ceiling
#   vgg       scripts/benchmark_vgg_step.py: PAU training-step overhead over ReLU
#   train     scripts/gpu_train_check.py: the artifact's rational_train, LeNet / VGG-8 / MobileNetV2 with
#             PAU on generated data, on CUDA and on the CPU
#   verdict   scripts/gpu_verdict.py: results.json and the verdict against the targets
# Every step runs even when an earlier one failed; the exit status is non-zero if any failed.
# Knobs: OUT, GPU_ARTIFACT (build/gpu-artifact), STEPS=a,b (only these), PYTEST_WORKERS (8),
# BENCH_ARGS (extra benchmark_gpu.py arguments).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu_out}"
ART="$(cd "${GPU_ARTIFACT:-$ROOT/build/gpu-artifact}" 2>/dev/null && pwd || echo "${GPU_ARTIFACT:-$ROOT/build/gpu-artifact}")"
mkdir -p "$OUT"
# At most 8 files come back from a device call: one log (run.log), the benchmarks' and the training
# check's JSON, results.json and verdict.txt; the steps' own logs stay in $TMP.
TMP="$(mktemp -d)"
declare -a STEP_NAMES=() STEP_RCS=()
export PYTHONUNBUFFERED=1

want() { [ -z "${STEPS:-}" ] || [[ ",$STEPS," == *",$1,"* ]]; }

step() {  # step NAME TIMEOUT_S command...: runs it, appends its output to $OUT/run.log, records rc
  local name="$1" limit="$2"; shift 2
  want "$name" || return 0
  echo "== [$(date -u +%H:%M:%S)] $name (limit ${limit} s): $*"
  local t0=$SECONDS log="$TMP/$name.log"
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  STEP_NAMES+=("$name"); STEP_RCS+=("$rc")
  { echo "==== $name: $* (rc=$rc, $((SECONDS - t0)) s)"; cat "$log"; } >>"$OUT/run.log"
  echo "   rc=$rc in $((SECONDS - t0)) s"
  tail -n 4 "$log" | sed 's/^/   | /'
  return 0
}

PY="${PYTHON:-python3}"
{
  echo "date: $(date -u)"; uname -a
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
  cat "$ART/manifest.json" 2>/dev/null && echo || echo "no artifact at $ART"
} >"$TMP/environment.txt" 2>&1
cat "$TMP/environment.txt" | tee "$OUT/run.log"

# The artifact's library for Python and the test binaries; torch's own libraries (and the CUDA
# runtime of its pip packages) for the test binaries, which have no Python to load them.
TORCH_LIBS="$("$PY" -c 'import glob, os, torch; d = os.path.dirname(torch.__file__); print(":".join([os.path.join(d, "lib")] + sorted(glob.glob(os.path.join(os.path.dirname(d), "nvidia", "*", "lib")))))')"
export LD_LIBRARY_PATH="$ART/lib:$TORCH_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export TORCH_RATIONAL_LIBRARY="$ART/lib/libtorch_rational.so.0" TORCH_RATIONAL_EXPECT_CUDA=1
export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"

export ART
run_gtests() {  # every C++ test binary; a failure in one does not stop the others
  local rc=0 exe
  for exe in "$ART"/bin/test_*; do
    echo "--- $(basename "$exe")"
    "$exe" --gtest_brief=1 || rc=1
  done
  return $rc
}
export -f run_gtests
pytest_workers() {  # pytest-xdist when the machine has it (the GPU image does), else serial
  if "$PY" -c 'import xdist' >/dev/null 2>&1; then echo "-n ${PYTEST_WORKERS:-8}"; fi
}

step artifact 30 "$PY" scripts/gpu_artifact.py check "$ART"
step gtest 60 bash -c run_gtests
# shellcheck disable=SC2046
step pytest 180 "$PY" -m pytest -q -p no:cacheprovider -rfE $(pytest_workers) -k "cuda or registration" \
  tests/python
# Sizes 2^20, 2^24, 2^28; the JSON is rewritten after every size, so a timeout keeps what was measured.
# shellcheck disable=SC2086
step bench 150 "$PY" scripts/benchmark_gpu.py --device cuda --min-log2 20 --max-log2 28 --step 4 \
  --json "$OUT/benchmark_gpu.json" ${BENCH_ARGS:-}
step vgg 45 "$PY" scripts/benchmark_vgg_step.py --device cuda --steps 30 --json "$OUT/benchmark_vgg_step.json"
step train 90 "$PY" scripts/gpu_train_check.py --binary "$ART/bin/rational_train" --devices cuda,cpu \
  --json "$OUT/train_check.json"

{
  echo "step rc"
  for i in "${!STEP_NAMES[@]}"; do echo "${STEP_NAMES[$i]} ${STEP_RCS[$i]}"; done
} | column -t | tee -a "$OUT/run.log"
# The verdict reads the benchmarks' JSON and the steps' status, writes results.json + verdict.txt.
printf '%s\n' "${STEP_NAMES[@]}" | paste -d' ' - <(printf '%s\n' "${STEP_RCS[@]}") >"$TMP/steps.txt"
step verdict 15 "$PY" scripts/gpu_verdict.py --out "$OUT" --steps "$TMP/steps.txt"
cat "$OUT/verdict.txt" 2>/dev/null
fail=0
for rc in "${STEP_RCS[@]}"; do [ "$rc" = 0 ] || fail=1; done
exit $fail
