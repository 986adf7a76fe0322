"""Builds the Python package by driving the project's CMake build (the single build of the C++
code): `pip install .` configures build/cmake (if needed), builds the torch_rational library there,
and ships it inside the package. Nothing is compiled twice: the tests and the C++ binaries use the
same build directory (TORCH_RATIONAL_BUILD_DIR chooses another one).

The library must be built against the torch of the environment the package is installed into.
`pip install .` runs this file in an isolated build environment that hides that torch from
`import torch`; the interpreter itself is the target one, so the torch to build against is asked of
a child interpreter started without pip's isolation (see `target_torch`). `python -m build` and
`uv` isolate with a separate virtual environment instead; there the child finds no torch and the
build stops at once, naming the command to use (`--no-isolation` / `--no-build-isolation`).

The torch version, C++ ABI and CUDA version of the build go into lib/build_info.json beside the
library; `import torch_rational` compares them with the running torch before loading it."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
LIBRARY = "libtorch_rational.so"
BUILD_INFO = "build_info.json"

# Run in the target interpreter: what the library must be built against and must later run with.
_TORCH_QUERY = """
import json, torch
print(json.dumps({"torch_version": torch.__version__,
                  "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
                  "cuda_version": torch.version.cuda,
                  "cmake_prefix_path": torch.utils.cmake_prefix_path}))
"""

# Variables through which pip's build isolation hides the target environment's packages.
_ISOLATION_VARIABLES = ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")


def target_torch() -> Dict[str, object]:
    """The torch of the environment being installed into, asked of a child interpreter without the
    isolation variables (pip runs this file with the target interpreter, torch hidden from it)."""
    env = {k: v for k, v in os.environ.items() if k not in _ISOLATION_VARIABLES}
    result = subprocess.run([sys.executable, "-c", _TORCH_QUERY], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(
            f"torch_rational: building needs PyTorch installed in the target environment, and {sys.executable} "
            f"cannot import it ({last}).\n"
            "Install torch first (pip install torch), then `pip install .` again. If this interpreter is a "
            "separate isolated build environment (python -m build, uv), build without isolation instead:\n"
            "    pip install --no-build-isolation .\n"
            "    python -m build --no-isolation --wheel ."
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _cached(build_dir: Path, variable: str) -> str:
    cache = build_dir / "CMakeCache.txt"
    match = re.search(rf"^{variable}:[A-Z]+=(.*)$", cache.read_text(), re.MULTILINE) if cache.exists() else None
    return match.group(1) if match else ""


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        torch_info = target_torch()
        prefix = str(torch_info.pop("cmake_prefix_path"))
        build_dir = Path(os.environ.get("TORCH_RATIONAL_BUILD_DIR", ROOT / "build" / "cmake"))
        # Configure a new directory, or one configured against another torch (a reused build/cmake).
        if not (build_dir / "CMakeCache.txt").exists():
            cmd = ["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DCMAKE_PREFIX_PATH={prefix}",
                   f"-DPython3_EXECUTABLE={sys.executable}"]
            subprocess.check_call(cmd + (["-G", "Ninja"] if shutil.which("ninja") else []))
        elif _cached(build_dir, "CMAKE_PREFIX_PATH") != prefix:
            # Only the torch changes: the directory's interpreter may outlive this (temporary) one.
            subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir), f"-DCMAKE_PREFIX_PATH={prefix}"])
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "torch_rational", "-j", jobs])
        lib = (build_dir / LIBRARY).resolve()
        if self.inplace:
            dest_dir = ROOT / "python" / "torch_rational" / "lib"
        else:
            dest_dir = Path(self.build_lib) / "torch_rational" / "lib"
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest_dir / LIBRARY)
        (dest_dir / BUILD_INFO).write_text(json.dumps(torch_info, indent=1) + "\n")


def _version() -> str:
    # Read, not imported: importing the package loads the library this file is about to build.
    text = (ROOT / "python" / "torch_rational" / "_version.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE).group(1)


setup(
    name="torch_rational",
    version=_version(),
    description="Learnable rational activation functions (PAU, RPAU, orthogonal-Pade, ERA) and PWLU as "
                "PyTorch custom ops",
    license="BSD-3-Clause",
    package_dir={"": "python"},
    packages=find_packages("python"),
    package_data={"torch_rational": ["py.typed"]},
    ext_modules=[CMakeExtension("torch_rational.lib.libtorch_rational")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["torch>=2.11", "numpy"],
    extras_require={"plot": ["matplotlib"], "test": ["pytest", "numpy"]},
    zip_safe=False,
)
