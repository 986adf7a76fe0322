"""Loads the C++ library (which registers the ``torch.ops.torch_rational`` ops) and registers the
fake (shape-only) kernels that ``torch.compile`` and ``torch.export`` trace with."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

_LIB_NAME = "libtorch_rational.so"
#: Written beside the library by setup.py: the torch it was built against.
_BUILD_INFO_NAME = "build_info.json"


def _find_library() -> Path:
    env = os.environ.get("TORCH_RATIONAL_LIBRARY")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent
    candidates.append(here / "lib" / _LIB_NAME)
    # Running from a source checkout after `cmake --build build`.
    candidates.append(here.parent.parent / "build" / "cmake" / _LIB_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise ImportError(
        "torch_rational: the compiled library was not found (looked at "
        + ", ".join(str(c) for c in candidates)
        + "). Install the package with `pip install .` (or `scripts/setup.sh`) from the source tree."
    )


def _torch_of_this_process() -> dict:
    return {"torch_version": torch.__version__, "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI),
            "cuda_version": torch.version.cuda}


def check_build_matches_torch(library: Path) -> None:
    """ImportError naming both versions when the library was built against another torch (version,
    C++ ABI or CUDA version) than the one running: a custom-op library is tied to the libtorch it was
    compiled against, and a mismatch fails later with an undefined symbol or worse. A library without
    build information (a CMake build of this checkout) is not checked."""
    info_path = library.parent / _BUILD_INFO_NAME
    if not info_path.is_file():
        return
    built = json.loads(info_path.read_text())
    running = _torch_of_this_process()
    differ = [k for k in running if built.get(k) != running[k]]
    if differ:
        def describe(info: dict) -> str:
            return (f"torch {info.get('torch_version')} (C++11 ABI {info.get('cxx11_abi')}, "
                    f"CUDA {info.get('cuda_version')})")

        raise ImportError(
            f"torch_rational: {library} was built against {describe(built)} but this process runs "
            f"{describe(running)}. Rebuild it for this torch: `pip install --force-reinstall --no-deps .` "
            "from the torch_rational source tree (or install a wheel built against this torch)."
        )


LIBRARY_PATH = _find_library()
check_build_matches_torch(LIBRARY_PATH)
torch.ops.load_library(str(LIBRARY_PATH))
ops = torch.ops.torch_rational


_SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_dtypes(op: str, **tensors: torch.Tensor) -> None:
    """Every tensor argument in a dtype the kernels support, as the C++ checks
    (csrc/ops/arg_checks.h): TypeError naming the argument and its dtype."""
    for name, t in tensors.items():
        message = (f"torch_rational.{op}: {name} has dtype {str(t.dtype).replace('torch.', '')}; "
                   "supported: float16, bfloat16, float32, float64")
        torch._check_type(t.dtype in _SUPPORTED_DTYPES, lambda message=message: message)


def _check_noise_seed(op: str, x: torch.Tensor, noise_seed) -> None:
    """noise_seed is read on the host: a CPU tensor (a meta one only when x is meta too)."""
    if noise_seed is None:
        return
    ok = noise_seed.device.type == "cpu" or (noise_seed.device.type == "meta" and x.device.type == "meta")
    message = f"torch_rational.{op}: noise_seed is on {noise_seed.device} but must be a CPU tensor (x is on {x.device})"
    torch._check_value(ok, lambda: message)


def _check_same_device(op: str, x: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Every tensor argument on x's device. A meta tensor among CPU ones sends the call to these
    fake kernels (Meta outranks CPU in dispatch), which would otherwise return an uninitialised
    CPU tensor as if it had been computed."""
    for name, t in tensors.items():
        message = f"torch_rational.{op}: {name} is on {t.device} but x is on {x.device}"
        torch._check_value(t.device == x.device, lambda message=message: message)


def _check_tensor_arguments(op: str, x: torch.Tensor, grad_output: torch.Tensor | None = None,
                            **parameters: torch.Tensor) -> None:
    """The dtypes, then the devices, of an op's tensor arguments (grad_output: backward ops only)."""
    leading = {"x": x} if grad_output is None else {"grad_output": grad_output, "x": x}
    _check_dtypes(op, **leading, **parameters)
    _check_same_device(op, x, **{name: t for name, t in leading.items() if name != "x"}, **parameters)


def _num_groups(per_group: torch.Tensor) -> int:
    """Groups of a per-group parameter: its first dimension when it has one more than one group's."""
    return per_group.shape[0] if per_group.dim() == 2 else 1


def _check_groups_divide_channels(who: str, x: torch.Tensor, channel_dim: int, num_groups: int) -> None:
    if num_groups > 1:
        torch._check(x.shape[channel_dim] % num_groups == 0,
                     lambda: f"{who}: x.size(channel_dim) is not divisible by num_groups")


def _backward_outputs(x: torch.Tensor, output_mask, *parameters: torch.Tensor) -> tuple:
    """What a backward op returns: grad_x like x (its memory format too), then each parameter's
    gradient, contiguous; an empty tensor where output_mask does not ask for the gradient."""
    gx = torch.empty_like(x) if output_mask[0] else x.new_empty((0,))
    return (gx, *(torch.empty_like(p, memory_format=torch.contiguous_format) if wanted else p.new_empty((0,))
                  for p, wanted in zip(parameters, output_mask[1:])))


@torch.library.register_fake("torch_rational::rational")
def _rational_fake(x, numerator, denominator, version="A", basis="power", channel_dim=1, noise=0.0,
                   noise_seed=None):
    _check_tensor_arguments("rational", x, numerator=numerator, denominator=denominator)
    _check_noise_seed("rational", x, noise_seed)
    torch._check(numerator.dim() in (1, 2), lambda: "torch_rational: numerator must be 1-D or 2-D")
    torch._check(numerator.dim() == denominator.dim(),
                 lambda: "torch_rational: numerator and denominator must both be 1-D or both 2-D")
    _check_groups_divide_channels("torch_rational", x, channel_dim, _num_groups(numerator))
    return torch.empty_like(x)


@torch.library.register_fake("torch_rational::rational_backward")
def _rational_backward_fake(grad_output, x, numerator, denominator, version, basis, channel_dim, noise,
                            noise_seed, output_mask):
    _check_tensor_arguments("rational_backward", x, grad_output, numerator=numerator, denominator=denominator)
    _check_noise_seed("rational_backward", x, noise_seed)
    return _backward_outputs(x, output_mask, numerator, denominator)


@torch.library.register_fake("torch_rational::pwlu")
def _pwlu_fake(x, heights, bounds, slopes, channel_dim=1):
    _check_tensor_arguments("pwlu", x, heights=heights, bounds=bounds, slopes=slopes)
    torch._check(heights.dim() in (1, 2), lambda: "torch_rational.pwlu: heights must be 1-D or 2-D")
    torch._check(heights.shape[-1] >= 2, lambda: "torch_rational.pwlu: heights must have N+1 >= 2 entries")
    _check_groups_divide_channels("torch_rational.pwlu", x, channel_dim, _num_groups(heights))
    return torch.empty_like(x)


@torch.library.register_fake("torch_rational::pwlu_backward")
def _pwlu_backward_fake(grad_output, x, heights, bounds, slopes, channel_dim, output_mask):
    _check_tensor_arguments("pwlu_backward", x, grad_output, heights=heights, bounds=bounds, slopes=slopes)
    return _backward_outputs(x, output_mask, heights, bounds, slopes)


@torch.library.register_fake("torch_rational::era")
def _era_fake(x, linear, fractions, eps=1e-6, channel_dim=1):
    _check_tensor_arguments("era", x, linear=linear, fractions=fractions)
    torch._check(linear.dim() in (1, 2) and linear.shape[-1] == 2,
                 lambda: "torch_rational.era: linear must have shape (2,) or (groups, 2)")
    torch._check(fractions.dim() == linear.dim() + 1 and fractions.shape[-1] == 4,
                 lambda: "torch_rational.era: fractions must have shape (n, 4) or (groups, n, 4)")
    torch._check(eps >= 0, lambda: "torch_rational.era: eps must be >= 0")
    _check_groups_divide_channels("torch_rational.era", x, channel_dim, _num_groups(linear))
    return torch.empty_like(x)


@torch.library.register_fake("torch_rational::era_backward")
def _era_backward_fake(grad_output, x, linear, fractions, eps, channel_dim, output_mask):
    _check_tensor_arguments("era_backward", x, grad_output, linear=linear, fractions=fractions)
    return _backward_outputs(x, output_mask, linear, fractions)
