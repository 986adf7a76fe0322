"""Installing the package (issue 16): `pip install .` with no extra flags into a fresh virtual
environment that has torch, a wheel built without isolation installed into another environment, and
the clear error when the library was built against another torch.

The installs reuse the CMake build directory of this checkout (TORCH_RATIONAL_BUILD_DIR, default
build/cmake; scripts/setup.sh builds it), so nothing is compiled: about a minute on the 2-core
AVX-512 machine, most of it creating the virtual environment and pip fetching setuptools into its
isolated build environment."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch_rational

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("TORCH_RATIONAL_BUILD_DIR", ROOT / "build" / "cmake"))

pytestmark = pytest.mark.install

# Evaluates a PAU with fixed coefficients in the installed package and prints where it came from.
_PROBE = """
import json, os, torch, torch_rational
x = torch.linspace(-3, 3, 13, dtype=torch.float64)
a = torch.tensor([0.1, 1.0, 0.5, 0.2], dtype=torch.float64)
b = torch.tensor([0.3, 0.4], dtype=torch.float64)
y = torch_rational.functional.rational(x, a, b)
package = os.path.dirname(torch_rational.__file__)
print(json.dumps({"file": torch_rational.__file__, "y": y.tolist(), "version": torch_rational.__version__,
                  "py_typed": os.path.isfile(os.path.join(package, "py.typed")),
                  "build_info": json.load(open(os.path.join(package, "lib", "build_info.json")))}))
"""


def _reference_pau(x: float) -> float:
    # Version A (safe PAU) from the formula: (a0 + a1 x + a2 x^2 + a3 x^3) / (1 + |b1 x| + |b2 x^2|).
    a, b = [0.1, 1.0, 0.5, 0.2], [0.3, 0.4]
    return sum(c * x**j for j, c in enumerate(a)) / (1 + sum(abs(c) * abs(x) ** (k + 1) for k, c in enumerate(b)))


def _clean_env() -> dict:
    """The environment without what points the tests at the source tree's package or library."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_RATIONAL_LIBRARY")}
    env["TORCH_RATIONAL_BUILD_DIR"] = str(BUILD_DIR)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list, cwd: Path, timeout: int = 600) -> str:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The source tree without build outputs (pip writes its build/ and egg-info into the tree)."""
    if not (ROOT / "setup.py").is_file():
        pytest.skip("not running from a source checkout")
    if not (BUILD_DIR / "CMakeCache.txt").is_file():
        pytest.skip(f"no CMake build directory at {BUILD_DIR} (scripts/setup.sh makes one)")
    dest = tmp_path_factory.mktemp("src") / "torch_rational"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", "build", "build-*", "dist", "*.egg-info", "__pycache__", "lib", "runs", ".pytest_cache"))
    return dest


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment that sees this interpreter's torch (--system-site-packages)."""
    path = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--system-site-packages", path], cwd=path.parent)
    return path


def _check_installed(venv: Path, cwd: Path) -> None:
    out = json.loads(_run([venv / "bin" / "python", "-c", _PROBE], cwd=cwd).strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(venv.resolve()), f"imported {out['file']}, not the install"
    assert out["version"] == torch_rational.__version__
    assert out["py_typed"], "py.typed is not in the installed package"
    assert out["build_info"]["torch_version"] == torch.__version__
    xs = [-3 + 0.5 * i for i in range(13)]
    assert all(math.isclose(y, _reference_pau(x), rel_tol=1e-12, abs_tol=1e-12) for x, y in zip(xs, out["y"]))


def test_wheel_built_without_isolation_installs_in_another_env(source_copy, venv, tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w", wheels, "."],
         cwd=source_copy)
    (wheel,) = wheels.glob("torch_rational-*.whl")
    # --force-reinstall: a torch_rational of the same version in the system site-packages (which this
    # environment sees) would otherwise count as installed already.
    _run([venv / "bin" / "pip", "install", "--no-deps", "--force-reinstall", wheel], cwd=tmp_path)
    _check_installed(venv, tmp_path)
    _run([venv / "bin" / "pip", "uninstall", "-y", "torch_rational"], cwd=tmp_path)


def test_pip_install_without_flags_in_a_fresh_env(source_copy, venv, tmp_path):
    # The build isolation hides the environment's torch from `import torch`; setup.py finds it anyway.
    _run([venv / "bin" / "pip", "install", source_copy], cwd=tmp_path)
    _check_installed(venv, tmp_path)


def _import_with_build_info(tmp_path: Path, build_info: dict) -> subprocess.CompletedProcess:
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    shutil.copyfile(torch_rational._ops.LIBRARY_PATH, lib_dir / "libtorch_rational.so")
    (lib_dir / "build_info.json").write_text(json.dumps(build_info))
    env = os.environ.copy()
    env["TORCH_RATIONAL_LIBRARY"] = str(lib_dir / "libtorch_rational.so")
    env["PYTHONPATH"] = str(Path(torch_rational.__file__).resolve().parents[1])
    return subprocess.run([sys.executable, "-c", "import torch_rational"], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)


def _this_torch() -> dict:
    return {"torch_version": torch.__version__, "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
            "cuda_version": torch.version.cuda}


@pytest.mark.parametrize("field,value", [("torch_version", "2.0.1+fake"), ("cxx11_abi", "flipped"),
                                         ("cuda_version", "99.9")])
def test_import_names_both_torches_when_the_build_differs(tmp_path, field, value):
    built = _this_torch()
    built[field] = (not built[field]) if value == "flipped" else value
    result = _import_with_build_info(tmp_path, built)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: torch_rational:") and "was built against" in message, message
    assert f"torch {built['torch_version']}" in message and f"runs torch {torch.__version__}" in message, message
    assert "pip install" in message


def test_import_with_the_same_torch_loads(tmp_path):
    result = _import_with_build_info(tmp_path, _this_torch())
    assert result.returncode == 0, result.stderr[-2000:]
