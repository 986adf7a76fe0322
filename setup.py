"""Builds the Python package by driving the project's CMake build (the single build of the C++
code): `pip install --no-build-isolation .` configures build/cmake (if needed), builds the
torch_rational library there, and ships it inside the package. Nothing is compiled twice: the tests
and the C++ binaries use the same build directory.

--no-build-isolation matters: an isolated build environment would install a second torch."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        import torch

        build_dir = Path(os.environ.get("TORCH_RATIONAL_BUILD_DIR", ROOT / "build" / "cmake"))
        if not (build_dir / "CMakeCache.txt").exists():
            cmd = ["cmake", "-S", str(ROOT), "-B", str(build_dir),
                   f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
                   f"-DPython3_EXECUTABLE={sys.executable}"]
            if shutil.which("ninja"):
                cmd += ["-G", "Ninja"]
            subprocess.check_call(cmd)
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "torch_rational", "-j", jobs])
        lib = (build_dir / "libtorch_rational.so").resolve()
        if self.inplace:
            dest_dir = ROOT / "python" / "torch_rational" / "lib"
        else:
            dest_dir = Path(self.build_lib) / "torch_rational" / "lib"
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest_dir / "libtorch_rational.so")


setup(
    name="torch_rational",
    version="0.1.0",
    description="Learnable rational activation functions (PAU, RPAU, orthogonal-Pade) as PyTorch custom ops",
    package_dir={"": "python"},
    packages=find_packages("python"),
    ext_modules=[CMakeExtension("torch_rational.lib.libtorch_rational")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["torch>=2.11", "numpy"],
    extras_require={"plot": ["matplotlib"], "test": ["pytest", "numpy"]},
    zip_safe=False,
)
