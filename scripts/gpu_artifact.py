#!/usr/bin/env python3
"""The GPU artifact (build/gpu-artifact, made by scripts/pack_gpu_artifact.sh) and its check.

    python3 scripts/gpu_artifact.py check build/gpu-artifact   # exit 1 if stale or for another torch

The artifact records a digest of every source that goes into it; gpu_run.sh refuses an artifact
whose sources differ from the working tree it runs in (a stale build would test old kernels), or
that was built against another torch (the C++ ABI of LibTorch is not stable across releases)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

# What the library and the C++ test binaries are built from.
SOURCES = ("CMakeLists.txt", "cmake", "csrc", "kernels", "tests/cpp", "tests/common")


def source_digest(root) -> str:
    root = Path(root)
    h = hashlib.sha256()
    for top in SOURCES:
        p = root / top
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def check(art: Path, root: Path) -> list[str]:
    import torch

    manifest_path = art / "manifest.json"
    if not manifest_path.is_file():
        return [f"{manifest_path} not found: build it with scripts/check_cuda_build.sh and carry build/gpu-artifact"]
    m = json.loads(manifest_path.read_text())
    problems = []
    if m["torch"] != torch.__version__:
        problems.append(f"built against torch {m['torch']}, this python has torch {torch.__version__}")
    if m["source_digest"] != source_digest(root):
        problems.append("built from other sources than this working tree (stale: rebuild with scripts/check_cuda_build.sh)")
    for name, size in m["files"].items():
        f = art / name
        if not f.is_file() or f.stat().st_size != size:
            problems.append(f"{name} missing or of another size than when packed")
    if torch.cuda.is_available():
        # Without machine code for this GPU (and no PTX to JIT from), every kernel launch fails.
        major, minor = torch.cuda.get_device_capability()
        archs = m["torch_cuda_arch_list"].replace(" ", ";").split(";")
        if f"{major}.{minor}" not in archs and not any(a.endswith("+PTX") for a in archs):
            problems.append(f"built for sm {m['torch_cuda_arch_list']!r}, this GPU is sm {major}.{minor}: rebuild with "
                            f"TORCH_CUDA_ARCH_LIST={major}.{minor} scripts/check_cuda_build.sh")
    return problems


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] != "check":
        print(__doc__, file=sys.stderr)
        return 2
    art = Path(sys.argv[2]).resolve()
    problems = check(art, Path(__file__).resolve().parent.parent)
    for p in problems:
        print(f"gpu_artifact: {p}", file=sys.stderr)
    if not problems:
        m = json.loads((art / "manifest.json").read_text())
        print(f"gpu_artifact: ok (torch {m['torch']}, CUDA {m['cuda']}, arch {m['torch_cuda_arch_list']}, built {m['built']})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
