#!/usr/bin/env bash
# Packs a CUDA build into build/gpu-artifact for scripts/gpu_run.sh, so the GPU machine (lent for
# minutes) builds nothing:
#   lib/libtorch_rational.so.0   the library (CPU + CUDA kernels, fatbin for TORCH_CUDA_ARCH_LIST)
#   bin/test_*                   the C++ GoogleTest binaries (tests/cpp)
#   bin/rational_train           the training binary (scripts/gpu_train_check.py runs it)
#   manifest.json                torch / CUDA versions, architectures, the sources' digest, files
# Usage: scripts/pack_gpu_artifact.sh BUILD_DIR PYTHON   (scripts/check_cuda_build.sh calls it)
# The folder must fit, with the working tree, in the 64 MiB a device call carries: it fails above
# ARTIFACT_MAX_MIB (default 56). Carry it with `carry: ["build/gpu-artifact"]`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${1:?usage: pack_gpu_artifact.sh BUILD_DIR PYTHON}"
PY="${2:?usage: pack_gpu_artifact.sh BUILD_DIR PYTHON}"
ART="${GPU_ARTIFACT:-$ROOT/build/gpu-artifact}"
MAX_MIB="${ARTIFACT_MAX_MIB:-56}"

rm -rf "$ART"
mkdir -p "$ART/lib" "$ART/bin"
# The test binaries need libtorch_rational.so.0 (its soname); gpu_run.sh puts lib/ on
# LD_LIBRARY_PATH, which comes before the build directory in their RUNPATH.
strip --strip-unneeded -o "$ART/lib/libtorch_rational.so.0" "$BUILD_DIR/libtorch_rational.so"
for exe in "$BUILD_DIR"/tests/cpp/test_*; do
  [ -x "$exe" ] && [ -f "$exe" ] && strip --strip-unneeded -o "$ART/bin/$(basename "$exe")" "$exe"
done
strip --strip-unneeded -o "$ART/bin/rational_train" "$BUILD_DIR/rational_train"
"$PY" - "$ROOT" "$ART" "$BUILD_DIR" <<'EOF'
import json, os, sys, time
import torch
sys.path.insert(0, os.path.join(sys.argv[1], "scripts"))
from gpu_artifact import source_digest  # one definition, shared with gpu_run.sh's check
root, art, build = sys.argv[1:]
# NAME:TYPE=VALUE lines; keyed by NAME (a -D without a type is cached as UNINITIALIZED).
cache = {l.split("=", 1)[0].split(":")[0]: l.split("=", 1)[1]
         for l in open(os.path.join(build, "CMakeCache.txt")).read().splitlines()
         if "=" in l and not l.startswith(("//", "#"))}
files = {}
for sub in ("lib", "bin"):
    for name in sorted(os.listdir(os.path.join(art, sub))):
        files[f"{sub}/{name}"] = os.path.getsize(os.path.join(art, sub, name))
manifest = {
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "torch_cuda_arch_list": cache.get("TORCH_CUDA_ARCH_LIST", ""),
    "source_digest": source_digest(root), "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "files": files,
}
json.dump(manifest, open(os.path.join(art, "manifest.json"), "w"), indent=1)
EOF
size_kib=$(du -sk "$ART" | cut -f1)
echo "[pack_gpu_artifact] $ART: $((size_kib / 1024)) MiB ($(ls "$ART/bin" | grep -c '^test_') test binaries and rational_train; limit $MAX_MIB MiB)"
if [ "$size_kib" -gt $((MAX_MIB * 1024)) ]; then
  echo "pack_gpu_artifact: $ART is over $MAX_MIB MiB: it would not travel to the GPU machine" >&2
  exit 1
fi
