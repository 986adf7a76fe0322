"""Shared dtypes, devices, tolerances and input builders for the torch_rational pytest suite.

Test files import the module-level names (DTYPES, DEVICES, ...) with `from conftest import ...`,
which works with pytest's default (prepend) import mode. This file never imports torch_rational,
so test_reference.py runs before the extension is built.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from reference import BASES, VERSIONS, denominator_length, error_scales, kink_margin, rational_reference_grads

REPO_ROOT = Path(__file__).resolve().parents[2]

# Use the in-tree package when it is not installed (e.g. built in place by the CMake build).
if importlib.util.find_spec("torch_rational") is None and (REPO_ROOT / "python" / "torch_rational").is_dir():
    sys.path.insert(0, str(REPO_ROOT / "python"))

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
FULL_PRECISION_DTYPES = [torch.float32, torch.float64]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")


def dtype_id(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= out_rtol * |expected| + math_rtol * scale + atol.

    out_rtol: rounding of the stored result to the output dtype (about one ulp).
    math_rtol: unit roundoff of the arithmetic dtype times a safety factor (degree-16 recurrences
        and sums of 17 terms), applied to the magnitude of the terms (reference.error_scales).
    atol: below the smallest subnormal-ish values of the output dtype.
    """

    out_rtol: float
    math_rtol: float
    atol: float


# Math is float32 for float16/bfloat16/float32 x and float64 for float64 x (DESIGN.md).
_MATH_RTOL = {torch.float64: 1e-12, torch.float32: 2e-5, torch.float16: 2e-5, torch.bfloat16: 2e-5}
_OUT_RTOL = {torch.float64: 0.0, torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}
_ATOL = {torch.float64: 1e-300, torch.float32: 1e-37, torch.float16: 1.2e-7, torch.bfloat16: 1e-37}


def tolerance(x_dtype: torch.dtype, out_dtype: torch.dtype | None = None) -> Tolerance:
    """Tolerance for a result of dtype out_dtype (default x_dtype) computed from x of x_dtype."""
    out_dtype = out_dtype or x_dtype
    return Tolerance(_OUT_RTOL[out_dtype], _MATH_RTOL[x_dtype], _ATOL[out_dtype])


def assert_close_scaled(actual, expected, scale, tol: Tolerance, name="value"):
    """Elementwise |actual - expected| <= out_rtol |expected| + math_rtol scale + atol, in float64.

    NaN must match NaN position for position (no NaN is expected unless the reference has one).
    """
    actual = actual.detach().cpu()
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a = actual.to(torch.float64)
    e = expected.detach().cpu().to(torch.float64)
    s = scale.detach().cpu().to(torch.float64)
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    assert torch.equal(nan_a, nan_e), (
        f"{name}: NaN at {nan_a.nonzero()[:5].tolist()} vs expected {nan_e.nonzero()[:5].tolist()}")
    a, e, s = a[~nan_e], e[~nan_e], s[~nan_e]
    if a.numel() == 0:
        return
    assert torch.isfinite(a).all() or not torch.isfinite(e).all(), (
        f"{name}: non-finite values where the reference is finite")
    err = (a - e).abs()
    allowed = tol.out_rtol * e.abs() + tol.math_rtol * s + tol.atol
    bad = ~(err <= allowed)
    if bad.any():
        ratio = err / allowed
        i = int(torch.argmax(torch.where(torch.isnan(ratio), torch.full_like(ratio, math.inf), ratio)))
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.numel()} elements out of tolerance; worst (flat index "
            f"{i}): actual {a[i].item()!r}, expected {e[i].item()!r}, |err| {err[i].item():.3e} > "
            f"allowed {allowed[i].item():.3e} (scale {s[i].item():.3e}, {tol})")


def rational_matrix(degrees_list, cases):
    """pytest params (basis, version, degrees, case value, dtype): every basis x version x case at
    (5, 4) for every dtype, the other degrees only for float32 / float64 so the suite stays small.
    cases: {id: value}."""
    for basis in BASES:
        for version in VERSIONS:
            for degrees in degrees_list:
                dtypes = DTYPES if degrees == (5, 4) else FULL_PRECISION_DTYPES
                for dtype in dtypes:
                    for name, value in cases.items():
                        yield pytest.param(
                            basis, version, degrees, value, dtype,
                            id=f"{basis}-{version}-deg{degrees[0]}_{degrees[1]}-{name}-{dtype_id(dtype)}")


def check_against_reference(y, x, numerator, denominator, version, basis, channel_dim, name="y"):
    """Forward output of the op vs the float64 reference on the same (already rounded) inputs."""
    from reference import rational_reference

    ref = rational_reference(x.detach().cpu(), numerator.detach().cpu(), denominator.detach().cpu(),
                             version, basis, channel_dim)
    scale = error_scales(x, numerator, denominator, None, version, basis, channel_dim)["y"]
    assert y.dtype == x.dtype, f"{name}: dtype {y.dtype}, expected x's dtype {x.dtype}"
    assert y.device == x.device
    assert_close_scaled(y, ref, scale, tolerance(x.dtype), name)


def assert_rational_grads_close(x, num, den, g, version, basis, channel_dim, got, name=""):
    """Gradients got = (y, grad_x, grad_num, grad_den) of the rational op vs the float64
    reference's for grad_output g, on the same (already rounded) inputs. The callers check dtypes,
    shapes and devices first: what they require differs between the CPU and the CUDA tests."""
    _, gx, ga, gb = got
    _, rgx, rga, rgb = rational_reference_grads(x, num, den, g, version, basis, channel_dim)
    s = error_scales(x, num, den, g, version, basis, channel_dim)
    assert_close_scaled(gx, rgx, s["grad_x"], tolerance(x.dtype), f"{name}grad_x")
    assert_close_scaled(ga, rga, s["grad_numerator"], tolerance(x.dtype, num.dtype), f"{name}grad_numerator")
    assert_close_scaled(gb, rgb, s["grad_denominator"], tolerance(x.dtype, den.dtype), f"{name}grad_denominator")


def forward_backward(op, *inputs_and_grad_output, **kwargs):
    """op(*inputs, **kwargs) on detached leaf copies of the tensor inputs, then backward with
    grad_output (the last positional argument). Returns (y, *the inputs' gradients)."""
    *inputs, grad_output = inputs_and_grad_output
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = op(*leaves, **kwargs)
    y.backward(grad_output)
    return (y.detach(), *(leaf.grad for leaf in leaves))


# ------------------------------------------------------------------------------------------------
# Input builders. Everything is drawn from an explicit torch.Generator so each test is reproducible
# on its own, independent of test order.


def seed_of(*parts) -> int:
    """A seed from a test's parameters: each case draws its own inputs, whatever else runs."""
    return zlib.crc32("-".join(map(str, parts)).encode())


def make_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_coefficients(x, degrees, version, basis, groups, *, gen, dtype=torch.float32, one_d=False):
    """Random (numerator, denominator) scaled to the data.

    Coefficient k is divided by max |f_k(x)| over the data so every term contributes (otherwise the
    top power swamps everything at degree 16). For version N the denominator is then scaled so that
    |sum b_k f_k(x)| <= 0.5 on the data: Q stays in [0.5, 1.5], far from any pole.
    Returned as float64 rounded through `dtype` (so the reference sees exactly the op's values)
    converted to `dtype`.
    """
    from reference import basis_functions

    m, n = degrees
    k0 = 0 if version == "C" else 1
    nb = denominator_length(version, n)
    f = basis_functions(x.detach().cpu().to(torch.float64).reshape(-1), max(m, n), basis)
    fmax = f.abs().amax(0).clamp_min(1e-3) if f.shape[0] else torch.ones(max(m, n) + 1, dtype=torch.float64)
    a = torch.randn(groups, m + 1, generator=gen, dtype=torch.float64) / fmax[: m + 1]
    b = torch.randn(groups, nb, generator=gen, dtype=torch.float64) / fmax[k0 : n + 1]
    if version == "N":
        if f.shape[0]:
            worst = (f[:, k0 : n + 1].abs() @ b.abs().T).amax()
            b = b * (0.5 / worst)
        else:
            b = b * 0.1
    if version == "C":
        b[:, 0] += 0.5 * torch.sign(b[:, 0])  # keep Q = 0.1 + |S| mostly away from its minimum
    if one_d:
        assert groups == 1
        a, b = a[0], b[0]
    return a.to(dtype), b.to(dtype)


def avoid_kinks(x, numerator, denominator, version, basis, channel_dim, margin=1e-3, max_iter=50):
    """Move elements of x that sit within `margin` (relative) of a kink of |.| (versions A/B/C).

    The nudge is done in x's dtype, so the returned tensor holds exactly the values the op sees.
    """
    x = x.detach().clone()
    for _ in range(max_iter):
        km = kink_margin(x, numerator, denominator, version, basis, channel_dim).to(x.device)
        bad = km < margin
        if not bad.any():
            return x
        x64 = x.to(torch.float64)
        step = 0.0137 * (1.0 + x64.abs())
        x = torch.where(bad, (x64 + step).to(x.dtype), x)
    raise AssertionError("could not move x away from the kinks")


def make_x(shape, *, gen, scale=2.0, dtype=torch.float32):
    return (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(dtype)


def make_case(shape, degrees, version, basis, groups, *, seed, dtype=torch.float32, coef_dtype=None,
              channel_dim=1, one_d=False, device="cpu", x_scale=2.0):
    """(x, numerator, denominator) on device, x away from kinks, coefficients fitted to x's range."""
    gen = make_generator(seed)
    x = make_x(shape, gen=gen, scale=x_scale, dtype=dtype)
    num, den = make_coefficients(x, degrees, version, basis, groups, gen=gen, dtype=coef_dtype or dtype,
                                 one_d=one_d)
    x = avoid_kinks(x, num, den, version, basis, channel_dim)
    return x.to(device), num.to(device), den.to(device)


@pytest.fixture
def default_threads():
    """Restore torch's intra-op thread count after a test that changes it."""
    n = torch.get_num_threads()
    yield n
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _restore_default_rng():
    """Tests that seed the global RNG should not leak that state into others."""
    state = torch.random.get_rng_state()
    yield
    torch.random.set_rng_state(state)
