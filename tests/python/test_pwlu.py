"""PWLU op and module against an independent float64 reference written from the formula.

y = Y_0 + (x - L) K_L for x < L;  y = Y_N + (x - R) K_R for x >= R;  otherwise, with d = (R - L)/N,
u = (x - L)/d, i = clamp(floor(u), 0, N - 1), t = u - i: y = Y_i + t (Y_{i+1} - Y_i).
Reference gradients come from torch autograd through that float64 formula (i is piecewise constant).
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import zlib

import pytest
import torch
import torch_rational
from conftest import DEVICES, HAS_CUDA, dtype_id, make_generator
from torch_rational.functional import pwlu

ops = torch.ops.torch_rational

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# Unit roundoff of the math type (float for half/bf16/float32 x, double for double) with a safety
# factor, and the rounding of a stored result in its own dtype.
MATH_RTOL = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 1e-6, torch.bfloat16: 1e-6}
OUT_RTOL = {torch.float64: 0.0, torch.float32: 2.0**-23, torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


# ------------------------------------------------------------------------------------------------
# Reference


def group_index(x: torch.Tensor, groups: int, channel_dim: int) -> torch.Tensor:
    """Group of every element of x (contiguous blocks of channels per group)."""
    if groups == 1:
        return torch.zeros(x.shape, dtype=torch.long)
    dim = channel_dim % x.dim()
    c = x.shape[dim]
    g = torch.arange(c) // (c // groups)
    shape = [1] * x.dim()
    shape[dim] = c
    return g.reshape(shape).expand(x.shape)


def pwlu_reference(x, heights, bounds, slopes, channel_dim=1):
    """float64 PWLU from the formula, differentiable in every argument (for reference gradients)."""
    x = x.to(torch.float64)
    h = heights.to(torch.float64).reshape(-1, heights.shape[-1])
    b = bounds.to(torch.float64).reshape(-1, 2)
    s = slopes.to(torch.float64).reshape(-1, 2)
    groups, n = h.shape[0], h.shape[1] - 1
    gi = group_index(x, groups, channel_dim).to(x.device)
    left, right = b[:, 0][gi], b[:, 1][gi]
    k_left, k_right = s[:, 0][gi], s[:, 1][gi]
    d = (right - left) / n
    u = (x - left) / d
    i = torch.floor(u.detach()).clamp(0, n - 1).nan_to_num(0).long()
    t = u - i
    y_i = h[gi, i]
    y_next = h[gi, i + 1]
    inner = y_i + t * (y_next - y_i)
    outer_left = h[gi, 0] + (x - left) * k_left
    outer_right = h[gi, n] + (x - right) * k_right
    return torch.where(x < left, outer_left, torch.where(x >= right, outer_right, inner))


def reference_with_grads(x, heights, bounds, slopes, grad, channel_dim=1):
    leaves = [t.detach().cpu().to(torch.float64).requires_grad_() for t in (x, heights, bounds, slopes)]
    y = pwlu_reference(*leaves, channel_dim=channel_dim)
    y.backward(grad.detach().cpu().to(torch.float64))
    return (y.detach(),) + tuple(t.grad for t in leaves)


def element_scale(x, heights, bounds, slopes, channel_dim=1):
    """Magnitude of the terms of y at every element: the rounding error is a multiple of it."""
    h = heights.detach().cpu().to(torch.float64).reshape(-1, heights.shape[-1])
    b = bounds.detach().cpu().to(torch.float64).reshape(-1, 2)
    s = slopes.detach().cpu().to(torch.float64).reshape(-1, 2)
    n = h.shape[1] - 1
    hmax = h.abs().amax(1)
    steep = torch.maximum(s.abs().amax(1), (h[:, 1:] - h[:, :-1]).abs().amax(1) * n / (b[:, 1] - b[:, 0]))
    gi = group_index(x, h.shape[0], channel_dim)
    xs = x.detach().cpu().to(torch.float64).abs().nan_to_num(0)
    return hmax[gi] + steep[gi] * (xs + b.abs().amax(1)[gi]) + 1.0


def assert_close(actual, expected, scale, x_dtype, out_dtype, name):
    a = actual.detach().cpu().to(torch.float64)
    e = expected.to(torch.float64)
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    assert torch.equal(torch.isnan(a), torch.isnan(e)), f"{name}: NaN positions differ"
    ok = ~torch.isnan(e)
    err = (a - e).abs()[ok]
    allowed = (OUT_RTOL[out_dtype] * e.abs() + MATH_RTOL[x_dtype] * 16 * scale)[ok]
    bad = ~(err <= allowed)
    assert not bad.any(), (f"{name}: {int(bad.sum())} of {bad.numel()} out of tolerance; worst |err| "
                           f"{(err - allowed).max().item():.3e} over allowed")


# ------------------------------------------------------------------------------------------------
# Inputs


def make_params(groups, n, *, gen, dtype=torch.float32, one_d=False):
    """Random heights, bounds (L < R, width 1..5), slopes, rounded through `dtype`."""
    left = torch.rand(groups, generator=gen, dtype=torch.float64) * 2 - 3
    right = left + 1 + 4 * torch.rand(groups, generator=gen, dtype=torch.float64)
    heights = torch.randn(groups, n + 1, generator=gen, dtype=torch.float64)
    slopes = torch.randn(groups, 2, generator=gen, dtype=torch.float64)
    bounds = torch.stack([left, right], 1)
    out = [t.to(dtype) for t in (heights, bounds, slopes)]
    return [t[0] for t in out] if one_d else out


def breakpoints(heights, bounds):
    h = heights.reshape(-1, heights.shape[-1])
    b = bounds.to(torch.float64).reshape(-1, 2)
    n = h.shape[1] - 1
    k = torch.arange(n + 1, dtype=torch.float64)
    return b[:, :1] + (b[:, 1:] - b[:, :1]) * k / n  # (G, N+1), includes L and R


def away_from_breakpoints(x, heights, bounds, channel_dim, margin=1e-3):
    """Moves elements within `margin` (in units of u) of a breakpoint, in x's own dtype."""
    x = x.detach().clone()
    h = heights.reshape(-1, heights.shape[-1])
    b = bounds.detach().cpu().to(torch.float64).reshape(-1, 2)
    n = h.shape[1] - 1
    gi = group_index(x, h.shape[0], channel_dim)
    for _ in range(50):
        x64 = x.cpu().to(torch.float64)
        u = (x64 - b[:, 0][gi]) / ((b[:, 1] - b[:, 0])[gi] / n)
        near = ((u - u.round()).abs() < margin) & (u > -1) & (u < n + 1)
        if not near.any():
            return x
        x = torch.where(near.to(x.device), (x64 + 0.0123).to(x.dtype).to(x.device), x)
    raise AssertionError("could not move x away from the breakpoints")


def make_x(shape, heights, bounds, *, gen, dtype, channel_dim, with_breakpoints=True):
    """Values around and beyond [L, R], plus (optionally) every breakpoint of group 0 exactly."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
    if with_breakpoints:
        bp = breakpoints(heights, bounds)[0]
        flat = x.reshape(-1)
        if len(heights.shape) == 1 or heights.shape[0] == 1:
            flat[: bp.numel()] = bp[: flat.numel()]
        x = flat.reshape(shape)
    return x.to(dtype)


def shape_for(channel_dim):
    return (3, 6, 5, 4) if channel_dim == 1 else (3, 5, 6)


def run(x, heights, bounds, slopes, grad, channel_dim=1):
    leaves = [t.detach().clone().requires_grad_() for t in (x, heights, bounds, slopes)]
    y = pwlu(*leaves, channel_dim=channel_dim)
    y.backward(grad)
    return (y.detach(),) + tuple(t.grad for t in leaves)


# ------------------------------------------------------------------------------------------------
# Forward and backward against the reference


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channel_dim", [1, -1])
@pytest.mark.parametrize("n", [1, 4, 16])
@pytest.mark.parametrize("groups", ["one", "two", "per_channel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_forward_backward_match_reference(dtype, groups, n, channel_dim, device):
    g = {"one": 1, "two": 2, "per_channel": 6}[groups]
    gen = make_generator(zlib.crc32(f"{dtype}-{groups}-{n}-{channel_dim}".encode()))
    param_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    heights, bounds, slopes = make_params(g, n, gen=gen, dtype=param_dtype)
    x = make_x(shape_for(channel_dim), heights, bounds, gen=gen, dtype=dtype, channel_dim=channel_dim)
    y = pwlu(x.to(device), heights.to(device), bounds.to(device), slopes.to(device), channel_dim=channel_dim)
    assert y.dtype == dtype and y.shape == x.shape and y.device.type == device
    ref = pwlu_reference(x, heights, bounds, slopes, channel_dim)
    scale = element_scale(x, heights, bounds, slopes, channel_dim)
    assert_close(y, ref, scale, dtype, dtype, "y")

    # Gradients: away from the breakpoints, where dy/dx and dy/dbounds jump.
    x = away_from_breakpoints(x, heights, bounds, channel_dim)
    grad = (torch.randn(x.shape, generator=gen, dtype=torch.float64)).to(dtype)
    out = run(x.to(device), heights.to(device), bounds.to(device), slopes.to(device), grad.to(device), channel_dim)
    ref = reference_with_grads(x, heights, bounds, slopes, grad, channel_dim)
    scale = element_scale(x, heights, bounds, slopes, channel_dim)
    g64 = grad.to(torch.float64).abs()
    assert_close(out[0], ref[0], scale, dtype, dtype, "y")
    assert_close(out[1], ref[1], scale * g64, dtype, dtype, "grad_x")
    # A parameter gradient sums the per-element terms of its group: the error scales with that sum.
    gi = group_index(x, g, channel_dim)
    total = torch.zeros(g, dtype=torch.float64).index_add_(0, gi.reshape(-1), (scale * g64).reshape(-1))
    for got, want, name, shape in zip(out[2:], ref[2:], ("heights", "bounds", "slopes"),
                                      (heights.shape, bounds.shape, slopes.shape)):
        assert got.dtype == param_dtype and got.shape == shape
        assert_close(got, want, total[:, None].expand(shape), dtype, param_dtype, f"grad_{name}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
def test_many_pieces(dtype, device):
    # N = 300: more heights than one pass of the CUDA backward bins (several shared-memory windows).
    gen = make_generator(5)
    heights, bounds, slopes = make_params(2, 300, gen=gen, dtype=dtype)
    x = away_from_breakpoints(make_x((8, 4, 50), heights, bounds, gen=gen, dtype=dtype, channel_dim=1,
                                     with_breakpoints=False), heights, bounds, 1)
    grad = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype)
    out = run(x.to(device), heights.to(device), bounds.to(device), slopes.to(device), grad.to(device))
    ref = reference_with_grads(x, heights, bounds, slopes, grad)
    scale = element_scale(x, heights, bounds, slopes)
    assert_close(out[0], ref[0], scale, dtype, dtype, "y")
    assert_close(out[1], ref[1], scale * grad.abs().double(), dtype, dtype, "grad_x")
    total = (scale * grad.abs().double()).sum()
    for got, want in zip(out[2:], ref[2:]):
        assert_close(got, want, total.expand(want.shape), dtype, dtype, "parameter gradient")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1, 4, 16])
def test_exact_breakpoints_and_bounds(n, device):
    # Bounds and breakpoints that float32 represents exactly: y there must be Y_k itself.
    heights = torch.randn(n + 1, generator=make_generator(n), dtype=torch.float64).to(torch.float32)
    bounds = torch.tensor([-2.0, 2.0])
    slopes = torch.tensor([0.25, -0.5])
    x = torch.linspace(-2.0, 2.0, n + 1)
    for dtype in (torch.float32, torch.float64):
        y = pwlu(x.to(dtype).to(device), heights.to(dtype).to(device), bounds.to(dtype).to(device),
                 slopes.to(dtype).to(device))
        torch.testing.assert_close(y.cpu(), heights.to(dtype), rtol=0, atol=2e-7 if dtype == torch.float32 else 0)
    # Beyond the bounds: the outer lines through Y_0 and Y_N.
    x = torch.tensor([-3.0, 3.0], device=device)
    y = pwlu(x, heights.to(device), bounds.to(device), slopes.to(device)).cpu()
    torch.testing.assert_close(y, torch.stack([heights[0] - 0.25, heights[n] - 0.5]))


# Breakpoints defined in the math type (docs/pwlu.md): d = (R - L) / N rounded once, x_k = L + k d
# rounded once (an FMA). Computed here exactly with fractions and rounded to nearest-even by hand,
# independently of the kernels.
def _round_exact(value, dtype):
    import numpy as np
    from fractions import Fraction

    if dtype == torch.float64:
        return float(value)  # Fraction -> float is correctly rounded
    c = np.float32(float(value))  # may be off by double rounding: look at the neighbours
    best = c
    for cand in (np.nextafter(c, np.float32(-np.inf)), np.nextafter(c, np.float32(np.inf))):
        e_c, e_b = abs(Fraction(float(cand)) - value), abs(Fraction(float(best)) - value)
        if e_c < e_b or (e_c == e_b and int(cand.view(np.int32)) % 2 == 0):
            best = cand
    return float(best)


def _math_breakpoints(left, right, n, dtype):
    from fractions import Fraction

    width = _round_exact(Fraction(right) - Fraction(left), dtype)
    d = _round_exact(Fraction(width) / n, dtype)
    return [_round_exact(Fraction(left) + k * Fraction(d), dtype) for k in range(n + 1)]


BREAKPOINT_CASES = [(-0.7, 3.1, 5), (-3.0, 3.0, 7), (0.1, 0.7, 3), (-2.3, 1.9, 16), (-1e-3, 5.0, 13),
                    (-5.5, -1.25, 100)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("left,right,n", BREAKPOINT_CASES)
def test_every_breakpoint_takes_the_right_piece(left, right, n, dtype):
    """x exactly on x_k (k = 1..N-1) is in piece k: y = Y_k exactly, dy/dx = the slope of piece k, the
    bounds gradients of piece k; x = L is in piece 0, x = R on the right line. Checked on the scalar
    path (one element per call) and on the vector path (a long tensor, per-lane bins)."""
    gen = make_generator(n)
    left, right = (torch.tensor(v, dtype=dtype).item() for v in (left, right))
    xs = _math_breakpoints(left, right, n, dtype)
    assert xs[0] == left
    # Heights with slopes that differ a lot from piece to piece, so the left piece is visibly wrong.
    heights = (torch.randn(n + 1, generator=gen, dtype=torch.float64) * 2).to(dtype)
    bounds = torch.tensor([left, right], dtype=dtype)
    slopes = torch.tensor([0.75, -1.5], dtype=dtype)
    points = xs[:n] + [right]  # x_0 = L .. x_{N-1}, then R (x_N may differ from R by rounding)

    # float64 reference from the formula, piece k at x_k, the right line at R.
    h = heights.to(torch.float64).tolist()
    width = right - left
    d = width / n

    def expected(k, g):
        if k == n:  # x = R: y = Y_N + (x - R) K_R
            return dict(y=h[n], gx=g * slopes[1].item(), gh={n: g}, gl=0.0, gr=-g * slopes[1].item(),
                        gs=(0.0, 0.0))
        s = h[k + 1] - h[k]
        return dict(y=h[k], gx=g * s / d, gh={k: g}, gl=g * s * (k - n) / width, gr=-g * s * k / width,
                    gs=(0.0, 0.0))

    tol = 1e-12 if dtype == torch.float64 else 2e-6
    for k, xk in enumerate(points):
        x = torch.tensor([xk], dtype=dtype)
        y = pwlu(x, heights, bounds, slopes)
        e = expected(k, 1.0)
        assert y.item() == e["y"], f"y at breakpoint k={k}: {y.item()!r} != Y_k = {e['y']!r}"
        gx, gh, gb, gs = ops.pwlu_backward(torch.ones_like(x), x, heights, bounds, slopes, 1,
                                           [True, True, True, True])
        assert gx.item() == pytest.approx(e["gx"], rel=tol, abs=tol), f"dy/dx at k={k}"
        want_h = torch.zeros(n + 1, dtype=torch.float64)
        for j, v in e["gh"].items():
            want_h[j] = v
        torch.testing.assert_close(gh.to(torch.float64), want_h, rtol=0, atol=tol, msg=f"dy/dheights at k={k}")
        scale = max(1.0, abs(e["gl"]), abs(e["gr"]))
        torch.testing.assert_close(gb.to(torch.float64), torch.tensor([e["gl"], e["gr"]], dtype=torch.float64),
                                   rtol=tol, atol=tol * scale, msg=f"dy/dbounds at k={k}")
        torch.testing.assert_close(gs.to(torch.float64), torch.zeros(2, dtype=torch.float64), rtol=0, atol=0)

    # Vector path: every point many times (lengths that give whole vectors, per-lane bins and a tail).
    reps = 8 * 16 * (n + 2) + 3
    x = torch.tensor(points, dtype=dtype).repeat(reps)
    g = torch.rand(x.shape, generator=gen, dtype=torch.float64).to(dtype) + 0.5
    y = pwlu(x, heights, bounds, slopes)
    gx, gh, gb, gs = ops.pwlu_backward(g, x, heights, bounds, slopes, 1, [True, True, True, True])
    want_y = torch.tensor([expected(k, 1.0)["y"] for k in range(n + 1)], dtype=torch.float64).repeat(reps)
    assert torch.equal(y.to(torch.float64), want_y), "y at the breakpoints (vector path)"
    gl = g.to(torch.float64).tolist()
    ex = [expected(i % (n + 1), gl[i]) for i in range(x.numel())]
    want_gx = torch.tensor([e["gx"] for e in ex], dtype=torch.float64)
    torch.testing.assert_close(gx.to(torch.float64), want_gx, rtol=tol, atol=tol, msg="dy/dx (vector path)")
    want_h = torch.zeros(n + 1, dtype=torch.float64)
    want_b = torch.zeros(2, dtype=torch.float64)
    abs_b = torch.zeros(2, dtype=torch.float64)
    for e in ex:
        for j, v in e["gh"].items():
            want_h[j] += v
        want_b += torch.tensor([e["gl"], e["gr"]], dtype=torch.float64)
        abs_b += torch.tensor([abs(e["gl"]), abs(e["gr"])], dtype=torch.float64)
    torch.testing.assert_close(gh.to(torch.float64), want_h, rtol=tol, atol=tol * float(g.sum()))
    assert ((gb.to(torch.float64) - want_b).abs() <= tol * abs_b + 1e-12).all(), (gb, want_b)


@pytest.mark.parametrize("device", DEVICES)
def test_one_d_parameters_any_shape(device):
    heights, bounds, slopes = make_params(1, 5, gen=make_generator(7), dtype=torch.float64, one_d=True)
    for shape in [(), (7,), (2, 3, 4, 5)]:
        x = torch.randn(shape, generator=make_generator(8), dtype=torch.float64)
        y = pwlu(x.to(device), heights.to(device), bounds.to(device), slopes.to(device), channel_dim=5)
        assert y.shape == x.shape
        torch.testing.assert_close(y.cpu(), pwlu_reference(x, heights, bounds, slopes), rtol=1e-13, atol=1e-13)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    params = [t.clone().requires_grad_() for t in (heights, bounds, slopes)]
    pwlu(x.to(device), *[p.to(device) for p in params]).sum().backward()
    assert params[0].grad.shape == (6,) and params[1].grad.shape == (2,) and params[2].grad.shape == (2,)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x_dtype,param_dtype", [(torch.bfloat16, torch.float32), (torch.float32, torch.float64),
                                                 (torch.float16, torch.float64)], ids=str)
def test_mixed_dtypes(x_dtype, param_dtype, device):
    gen = make_generator(11)
    heights, bounds, slopes = make_params(2, 8, gen=gen, dtype=param_dtype)
    x = away_from_breakpoints(make_x((4, 2, 9), heights, bounds, gen=gen, dtype=x_dtype, channel_dim=1,
                                     with_breakpoints=False), heights, bounds, 1)
    grad = torch.randn(x.shape, generator=gen).to(x_dtype)
    out = run(x.to(device), heights.to(device), bounds.to(device), slopes.to(device), grad.to(device))
    assert out[0].dtype == x_dtype and out[1].dtype == x_dtype
    assert all(o.dtype == param_dtype for o in out[2:])
    ref = reference_with_grads(x, heights, bounds, slopes, grad)
    scale = element_scale(x, heights, bounds, slopes)
    assert_close(out[0], ref[0], scale, x_dtype, x_dtype, "y")
    total = (scale * grad.to(torch.float64).abs()).sum()
    for got, want in zip(out[2:], ref[2:]):
        assert_close(got, want, total.expand(want.shape), x_dtype, param_dtype, "parameter gradient")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "sliced", "transposed"])
def test_layouts(layout, device):
    gen = make_generator(12)
    heights, bounds, slopes = make_params(4, 6, gen=gen, dtype=torch.float64)
    base = torch.randn(2, 8, 5, 6, generator=gen, dtype=torch.float64) * 3
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    elif layout == "sliced":
        x = base[:, :, 1:4, ::2]
    else:
        x = base.transpose(2, 3)
    x = x.to(device)
    y = pwlu(x, heights.to(device), bounds.to(device), slopes.to(device))
    torch.testing.assert_close(y.cpu(), pwlu_reference(x.cpu(), heights, bounds, slopes), rtol=1e-13, atol=1e-13)


def test_empty_input():
    heights, bounds, slopes = make_params(2, 4, gen=make_generator(13))
    x = torch.empty(0, 4, 3, requires_grad=True)
    params = [t.clone().requires_grad_() for t in (heights, bounds, slopes)]
    y = pwlu(x, *params)
    assert y.shape == x.shape
    y.sum().backward()
    assert torch.equal(params[0].grad, torch.zeros_like(heights))


# ------------------------------------------------------------------------------------------------
# gradcheck, opcheck, torch.compile


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("groups,one_d", [(1, True), (2, False), (3, False)])
def test_gradcheck(groups, one_d, device):
    gen = make_generator(20 + groups)
    heights, bounds, slopes = make_params(groups, 5, gen=gen, dtype=torch.float64, one_d=one_d)
    x = make_x((2, 6, 7), heights, bounds, gen=gen, dtype=torch.float64, channel_dim=1, with_breakpoints=False)
    x = away_from_breakpoints(x, heights, bounds, 1, margin=1e-2)
    args = [t.to(device).requires_grad_() for t in (x, heights, bounds, slopes)]
    assert torch.autograd.gradcheck(lambda *a: pwlu(*a, channel_dim=1), args, eps=1e-6, atol=1e-7)


def _opcheck_inputs(device, requires_grad, one_d=False):
    gen = make_generator(30)
    heights, bounds, slopes = make_params(1 if one_d else 2, 6, gen=gen, one_d=one_d)
    x = make_x((3, 4, 5), heights, bounds, gen=gen, dtype=torch.float32, channel_dim=1, with_breakpoints=False)
    x = away_from_breakpoints(x, heights, bounds, 1)
    return [t.to(device).requires_grad_(requires_grad) for t in (x, heights, bounds, slopes)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("one_d", [False, True])
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad, one_d, device):
    x, h, b, s = _opcheck_inputs(device, requires_grad, one_d)
    torch.library.opcheck(ops.pwlu.default, (x, h, b, s, 1))


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck_backward_op(device):
    x, h, b, s = _opcheck_inputs(device, False)
    g = torch.randn_like(x)
    torch.library.opcheck(ops.pwlu_backward.default, (g, x, h, b, s, 1, [True, True, True, True]))
    torch.library.opcheck(ops.pwlu_backward.default, (g, x, h, b, s, 1, [True, False, True, False]))


@pytest.mark.parametrize("device", DEVICES)
def test_backward_output_mask_gives_empty_tensors(device):
    x, h, b, s = _opcheck_inputs(device, False)
    gx, gh, gb, gs = ops.pwlu_backward(torch.ones_like(x), x, h, b, s, 1, [False, True, False, False])
    assert gx.shape == (0,) and gb.shape == (0,) and gs.shape == (0,) and gh.shape == h.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend, device):
    torch._dynamo.reset()
    x, h, b, s = _opcheck_inputs(device, True)

    def f(x, h, b, s):
        return (pwlu(x * 2, h, b, s, channel_dim=1) ** 2).sum()

    compiled = torch.compile(f, fullgraph=True, backend=backend)
    loss = compiled(x, h, b, s)
    grads = torch.autograd.grad(loss, (x, h, b, s))
    loss_e = f(x, h, b, s)
    grads_e = torch.autograd.grad(loss_e, (x, h, b, s))
    torch.testing.assert_close(loss, loss_e)
    for a, e in zip(grads, grads_e):
        torch.testing.assert_close(a, e)


def test_torch_compile_module_after_realignment():
    torch._dynamo.reset()
    m = torch_rational.PWLU(8, init="gelu", num_groups=2, realign_steps=1)
    m(torch.randn(16, 4, 3))  # collects once and realigns (eager)
    x = torch.randn(5, 4, 3, requires_grad=True)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    y = compiled(x)
    y.sum().backward()
    torch.testing.assert_close(y, m(x))
    assert m.heights.grad is not None and x.grad is not None


# ------------------------------------------------------------------------------------------------
# Errors, NaN, determinism


def _good():
    return torch.randn(2, 4, 3), torch.zeros(2, 5), torch.tensor([[-1.0, 1.0], [-2.0, 2.0]]), torch.ones(2, 2)


@pytest.mark.parametrize("change,exc,match", [
    (lambda a: a.update(bounds=torch.tensor([[1.0, 1.0], [-2.0, 2.0]])), ValueError, r"bounds\[0\]"),
    (lambda a: a.update(bounds=torch.tensor([[-1.0, 1.0], [3.0, 2.0]])), ValueError, r"bounds\[1\]"),
    (lambda a: a.update(bounds=torch.tensor([[-1.0, float("nan")], [-2.0, 2.0]])), ValueError, "bounds"),
    (lambda a: a.update(bounds=torch.tensor([[-math.inf, 1.0], [-2.0, 2.0]])), ValueError, "bounds"),
    (lambda a: a.update(heights=torch.zeros(2, 1)), ValueError, "heights"),
    (lambda a: a.update(heights=torch.zeros(2, 5, 1)), ValueError, "heights"),
    (lambda a: a.update(bounds=torch.zeros(2, 3)), ValueError, "bounds"),
    (lambda a: a.update(bounds=torch.tensor([-1.0, 1.0])), ValueError, "bounds"),
    (lambda a: a.update(slopes=torch.ones(3, 2)), ValueError, "slopes"),
    (lambda a: a.update(slopes=torch.ones(2)), ValueError, "slopes"),
    (lambda a: a.update(x=torch.randn(2, 3, 3)), ValueError, "channel_dim"),
    (lambda a: a.update(channel_dim=5), IndexError, "channel_dim"),
    (lambda a: a.update(x=torch.ones(2, 4, dtype=torch.int64)), TypeError, "x has dtype Long; supported"),
    (lambda a: a.update(heights=torch.zeros(2, 5, dtype=torch.int32)), TypeError, "heights has dtype Int"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_raises_naming_the_argument(change, exc, match):
    x, h, b, s = _good()
    args = {"x": x, "heights": h, "bounds": b, "slopes": s, "channel_dim": 1}
    change(args)
    with pytest.raises(exc, match=match):
        ops.pwlu(args["x"], args["heights"], args["bounds"], args["slopes"], args["channel_dim"])
    # The backward op checks the same way.
    if args["x"].dtype.is_floating_point:
        with pytest.raises(exc, match=match):
            ops.pwlu_backward(torch.ones_like(args["x"]), args["x"], args["heights"], args["bounds"],
                              args["slopes"], args["channel_dim"], [True, True, True, True])


def test_grad_output_mismatch():
    x, h, b, s = _good()
    with pytest.raises(ValueError, match="grad_output"):
        ops.pwlu_backward(torch.ones(3), x, h, b, s, 1, [True, True, True, True])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
def test_nan_stays_in_its_element(dtype, device):
    gen = make_generator(40)
    param_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
    heights, bounds, slopes = make_params(2, 6, gen=gen, dtype=param_dtype)
    x = away_from_breakpoints(make_x((2, 4, 5), heights, bounds, gen=gen, dtype=dtype, channel_dim=1,
                                     with_breakpoints=False), heights, bounds, 1)
    x[1, 0, 2] = float("nan")  # channel 0 -> group 0
    grad = torch.ones_like(x)
    y, gx, gh, gb, gs = run(x.to(device), heights.to(device), bounds.to(device), slopes.to(device), grad.to(device))
    assert torch.isnan(y[1, 0, 2]) and int(torch.isnan(y).sum()) == 1
    assert torch.isnan(gx[1, 0, 2]) and int(torch.isnan(gx).sum()) == 1
    # Group 1 never sees the NaN: its parameter gradients are finite and right.
    keep = x[:, 2:]
    ref = reference_with_grads(keep, heights[1:], bounds[1:], slopes[1:], grad[:, 2:])
    total = (element_scale(keep, heights[1:], bounds[1:], slopes[1:])).sum()
    for got, want in zip((gh[1:], gb[1:], gs[1:]), ref[2:]):
        assert torch.isfinite(got).all()
        assert_close(got, want, total.expand(want.shape), dtype, param_dtype, "group 1 gradient")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("groups", [1, 3, 48])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=dtype_id)
def test_backward_is_bitwise_reproducible(dtype, groups, device):
    # Big enough to be split over threads / blocks.
    gen = make_generator(50 + groups)
    heights, bounds, slopes = make_params(groups, 16, gen=gen)
    x = (torch.randn(16, 48, 20, 20, generator=gen) * 3).to(dtype).to(device)
    grad = torch.randn(x.shape, generator=gen).to(dtype).to(device)
    args = [t.to(device) for t in (heights, bounds, slopes)]
    first = run(x, *args, grad)
    second = run(x, *args, grad)
    for a, b, name in zip(first, second, ("y", "grad_x", "grad_heights", "grad_bounds", "grad_slopes")):
        assert torch.equal(a, b), f"{name} differs between two identical runs"


# ------------------------------------------------------------------------------------------------
# Module


def test_module_defaults_and_repr():
    m = torch_rational.PWLU()
    assert m.heights.shape == (1, 17) and m.bounds.shape == (1, 2) and m.slopes.shape == (1, 2)
    assert m.realign_steps == 100
    assert "num_pieces=16" in repr(m) and "init='relu'" in repr(m)
    # Initialised from relu on [-3, 3]: breakpoints k * 6/16 - 3, outer slopes 0 and 1.
    pts = torch.linspace(-3, 3, 17, dtype=torch.float64)
    torch.testing.assert_close(m.heights[0].double(), torch.relu(pts), rtol=0, atol=1e-6)
    torch.testing.assert_close(m.bounds[0], torch.tensor([-3.0, 3.0]))
    torch.testing.assert_close(m.slopes[0], torch.tensor([0.0, 1.0]))
    names = {n for n, _ in m.named_buffers()}
    assert names == {"num_realign_calls", "running_mean", "running_std", "aligned"}


@pytest.mark.parametrize("init", ["relu", "leaky_relu", "swish", "silu", "gelu", "tanh", "sigmoid", "identity",
                                  "elu", "softplus"])
def test_module_inits(init):
    m = torch_rational.PWLU(8, init=init).eval()
    x = torch.linspace(-3, 3, 9)
    torch.testing.assert_close(m(x), torch_rational.activation_function(init, x), rtol=1e-5, atol=1e-5)


def test_module_bad_options():
    with pytest.raises(ValueError, match="num_pieces"):
        torch_rational.PWLU(0)
    with pytest.raises(ValueError, match="num_groups"):
        torch_rational.PWLU(4, num_groups=0)
    with pytest.raises(ValueError, match="realign_steps"):
        torch_rational.PWLU(4, realign_steps=-1)
    with pytest.raises(ValueError, match="bound"):
        torch_rational.PWLU(4, bound=0.0)
    with pytest.raises(ValueError, match="no_such_function"):
        torch_rational.PWLU(4, init="no_such_function")


def _batches(n, shape=(64, 4, 5), groups_shift=None, seed=60):
    gen = make_generator(seed)
    out = []
    for k in range(n):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * (1.5 + 0.1 * k) + 0.7
        if groups_shift is not None:
            x = x + groups_shift
        out.append(x.to(torch.float32))
    return out


def _expected_stats(batches, groups=1):
    mean = std = None
    for x in batches:
        flat = x.to(torch.float64).movedim(1, 0).reshape(groups, -1) if groups > 1 else x.double().reshape(1, -1)
        bm = flat.mean(1)
        bs = ((flat - bm[:, None]) ** 2).mean(1).sqrt()
        if mean is None:
            mean, std = bm, bs
        else:
            mean, std = 0.9 * mean + 0.1 * bm, 0.9 * std + 0.1 * bs
    return mean, std


@pytest.mark.parametrize("groups", [1, 2])
def test_module_realignment_sets_bounds_from_statistics(groups):
    shift = torch.tensor([-1.0, 2.0]).reshape(1, 2, 1).repeat_interleave(2, 1) if groups == 2 else None
    batches = _batches(5, groups_shift=shift)
    m = torch_rational.PWLU(16, init="tanh", num_groups=groups, realign_steps=5)
    for k, x in enumerate(batches):
        y = m(x)
        # While collecting, the module is its init function.
        torch.testing.assert_close(y, torch.tanh(x))
        assert bool(m.aligned) == (k == 4)
    mean, std = _expected_stats(batches, groups)
    torch.testing.assert_close(m.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.running_std.double(), std, rtol=1e-5, atol=1e-6)
    expected_bounds = torch.stack([mean - 3 * std, mean + 3 * std], 1)
    torch.testing.assert_close(m.bounds.double(), expected_bounds, rtol=1e-5, atol=1e-5)
    # After realignment: the PWLU itself, ~tanh on [L, R] (linear interpolation error <= d^2/8 max|f''|,
    # |tanh''| <= 0.77), tangent lines outside.
    for g in range(groups):
        left, right = expected_bounds[g].tolist()
        d = (right - left) / 16
        x = torch.linspace(left, right, 1001)
        xin = x.reshape(-1, 1, 1).expand(-1, groups, 1).contiguous()
        y = m(xin)[:, g, 0].detach()
        assert (y.double() - torch.tanh(x.double())).abs().max() <= d * d / 8 * 0.77 + 1e-5
        outside = torch.tensor([left - 1.0, right + 1.0], dtype=torch.float64)
        slope = 1 - torch.tanh(torch.tensor([left, right], dtype=torch.float64)) ** 2
        want = torch.tanh(torch.tensor([left, right], dtype=torch.float64)) + torch.tensor([-1.0, 1.0]).double() * slope
        xo = outside.to(torch.float32).reshape(-1, 1, 1).expand(-1, groups, 1).contiguous()
        torch.testing.assert_close(m(xo)[:, g, 0].double().detach(), want, rtol=1e-4, atol=1e-4)


def test_module_trains_after_realignment():
    m = torch_rational.PWLU(8, realign_steps=1)
    m(torch.randn(32, 3))
    assert bool(m.aligned)
    y = m(torch.randn(32, 3))
    y.sum().backward()
    for p in (m.heights, m.bounds, m.slopes):
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert m.heights.grad.abs().sum() > 0


def test_module_empty_batch_is_not_a_step():
    m = torch_rational.PWLU(4, realign_steps=2)
    assert m(torch.empty(0, 3)).shape == (0, 3)
    assert int(m.num_realign_calls) == 0
    m(torch.randn(4, 3))
    assert int(m.num_realign_calls) == 1 and torch.isfinite(m.running_mean).all()


def test_module_gradient_flows_to_x_while_collecting():
    m = torch_rational.PWLU(8, init="gelu", realign_steps=10)
    x = torch.randn(20, requires_grad=True)
    m(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_module_eval_before_alignment_uses_parameters():
    m = torch_rational.PWLU(4, realign_steps=10).eval()
    x = torch.randn(10, 3)
    y = m(x)
    assert int(m.num_realign_calls) == 0 and not bool(m.aligned)
    torch.testing.assert_close(y.double(), pwlu_reference(x, m.heights.detach(), m.bounds.detach(),
                                                          m.slopes.detach()), rtol=1e-5, atol=1e-6)


def test_module_explicit_realign_and_zero_steps():
    m = torch_rational.PWLU(4, realign_steps=0)
    x = torch.randn(10, 3)
    torch.testing.assert_close(m(x), m.eval()(x))  # no collection with realign_steps = 0
    m.train()
    with torch.no_grad():
        m.running_mean.fill_(1.0)
        m.running_std.fill_(0.5)
    m.realign()
    torch.testing.assert_close(m.bounds, torch.tensor([[-0.5, 2.5]]))
    assert bool(m.aligned)


def test_module_state_dict_round_trip_mid_realignment():
    batches = _batches(4, seed=70)
    a = torch_rational.PWLU(8, init="swish", realign_steps=4)
    for x in batches[:2]:
        a(x)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = torch_rational.PWLU(8, init="swish", realign_steps=4)
    b(batches[0])  # different state that the load must overwrite, cache included
    b.load_state_dict(torch.load(buf))
    assert int(b.num_realign_calls) == 2 and not bool(b.aligned)
    for x in batches[2:]:
        a(x)
        b(x)
    assert bool(a.aligned) and bool(b.aligned)
    for name, t in a.state_dict().items():
        assert torch.equal(t, b.state_dict()[name]), name


def test_module_deepcopy_pickle_to_and_reset():
    m = torch_rational.PWLU(6, init="gelu", num_groups=2, realign_steps=1)
    m(torch.randn(8, 4, 3))
    x = torch.randn(5, 4, 3)
    y = m(x)
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert torch.equal(clone(x), y)
        assert bool(clone.aligned)
    m64 = copy.deepcopy(m).to(torch.float64)
    assert m64.heights.dtype == torch.float64
    torch.testing.assert_close(m64(x.double()), y.double(), rtol=1e-5, atol=1e-5)
    m.reset_parameters()
    assert not bool(m.aligned) and int(m.num_realign_calls) == 0
    torch.testing.assert_close(m.bounds, torch.tensor([[-3.0, 3.0], [-3.0, 3.0]]))


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_module_cuda_matches_cpu():
    m = torch_rational.PWLU(16, init="gelu", num_groups=4, realign_steps=1)
    m(torch.randn(16, 8, 5))
    x = torch.randn(16, 8, 5)
    mc = copy.deepcopy(m).cuda()
    torch.testing.assert_close(mc(x.cuda()).cpu(), m(x), rtol=1e-5, atol=1e-5)


# ---- a callable init: kept by the module (construction, statistics phase, realignment) --------------


def _hardswish_formula(x):
    """hardswish written out: x relu6(x + 3) / 6."""
    return x * torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


def _hardswish_derivative(x):
    """Off the kinks at -3 and 3: 0 left of them, (2x + 3)/6 between, 1 right of them."""
    return torch.where(x < -3, torch.zeros_like(x), torch.where(x > 3, torch.ones_like(x), (2.0 * x + 3.0) / 6.0))


def _sin_formula(x):
    """A function activation_function has no name for, and its derivative."""
    return torch.sin(x) + 0.5 * x


def _sin_derivative(x):
    return torch.cos(x) + 0.5


def test_module_callable_init_sets_heights_and_slopes():
    # bound 2.5 keeps the bounds off hardswish's kinks at -+3, where the derivative is one-sided.
    m = torch_rational.PWLU(8, init=lambda x: torch.nn.functional.hardswish(x), bound=2.5, dtype=torch.float64)
    points = torch.linspace(-2.5, 2.5, 9, dtype=torch.float64)
    ends = torch.tensor([-2.5, 2.5], dtype=torch.float64)
    torch.testing.assert_close(m.heights[0].detach(), _hardswish_formula(points), rtol=0, atol=1e-14)
    torch.testing.assert_close(m.bounds[0].detach(), ends, rtol=0, atol=0)
    # A central difference is exact on hardswish's parabola, up to rounding.
    torch.testing.assert_close(m.slopes[0].detach(), _hardswish_derivative(ends), rtol=0, atol=1e-9)
    named = torch_rational.PWLU(8, init="hardswish", bound=2.5, dtype=torch.float64)
    for p in ("heights", "bounds", "slopes"):  # the named init goes the same way
        assert torch.equal(getattr(named, p), getattr(m, p))
    assert "init='<lambda>'" in repr(m)


def test_module_callable_init_in_the_statistics_phase_and_realignment():
    G, N, momentum = 2, 16, 0.9
    m = torch_rational.PWLU(N, init=lambda x: torch.sin(x) + 0.5 * x, num_groups=G, realign_steps=3,
                            dtype=torch.float64)
    gen = torch.Generator().manual_seed(11)
    ref_mean = ref_std = None
    for k in range(3):
        x = (torch.randn(16, 4, 5, generator=gen, dtype=torch.float64) * (0.5 + 0.3 * k) + 0.2 * k)
        x.requires_grad_(True)
        y = m(x)  # the statistics phase: the callable itself, gradients included
        torch.testing.assert_close(y, _sin_formula(x.detach()), rtol=1e-15, atol=1e-15)
        y.sum().backward()
        torch.testing.assert_close(x.grad, _sin_derivative(x.detach()), rtol=1e-15, atol=1e-15)
        flat = x.detach().movedim(1, 0).reshape(G, -1)  # groups: blocks of 2 channels
        bm = flat.mean(1)
        bs = ((flat - bm[:, None]) ** 2).mean(1).sqrt()
        ref_mean = bm if ref_mean is None else momentum * ref_mean + (1 - momentum) * bm
        ref_std = bs if ref_std is None else momentum * ref_std + (1 - momentum) * bs
    assert bool(m.aligned)
    left, right = ref_mean - 3 * ref_std, ref_mean + 3 * ref_std
    torch.testing.assert_close(m.bounds.detach(), torch.stack([left, right], 1), rtol=1e-12, atol=1e-12)
    points = torch.stack([torch.linspace(lo, hi, N + 1, dtype=torch.float64) for lo, hi in zip(left, right)])
    torch.testing.assert_close(m.heights.detach(), _sin_formula(points), rtol=1e-12, atol=1e-12)
    # Central difference with a step h of 1e-3 of a piece: error h^2 / 6 max|third derivative| < 1e-7.
    torch.testing.assert_close(m.slopes.detach(), _sin_derivative(torch.stack([left, right], 1)), rtol=0, atol=1e-7)


def test_module_callable_init_is_kept_but_not_a_submodule():
    m = torch_rational.PWLU(8, init=torch.nn.Hardswish(), realign_steps=2)
    assert list(m.children()) == [] and "init='Hardswish'" in repr(m) and m.init == "Hardswish"
    assert set(m.state_dict()) == set(torch_rational.PWLU(8).state_dict())
    gen = torch.Generator().manual_seed(12)
    x0, x1 = torch.randn(32, 3, generator=gen), torch.randn(32, 3, generator=gen) * 2 + 0.5
    m(x0)  # one statistics step of two
    # Copies keep the callable: they finish the statistics phase and realign with it.
    copies = [copy.deepcopy(m), pickle.loads(pickle.dumps(m)), copy.deepcopy(m).to(torch.float64)]
    loaded = torch_rational.PWLU(8, init=torch.nn.Hardswish(), realign_steps=2)
    loaded.load_state_dict(m.state_dict())
    for c in [m] + copies + [loaded]:
        x = x1.to(c.heights.dtype)
        torch.testing.assert_close(c(x), _hardswish_formula(x))  # the last statistics step: the callable
        assert bool(c.aligned)
    left, right = m.bounds[0].detach().double()
    points = torch.linspace(float(left), float(right), 9, dtype=torch.float64)
    for c in [m] + copies + [loaded]:
        torch.testing.assert_close(c.heights[0].detach().double(), _hardswish_formula(points), rtol=1e-6, atol=1e-6)
    assert copies[2].heights.dtype == torch.float64
    # A lambda init deep-copies with the module; pickling needs a picklable callable (documented).
    lam = torch_rational.PWLU(4, init=lambda x: torch.tanh(x))
    assert copy.deepcopy(lam).init == "<lambda>"
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(lam)
    # Assigning a callable re-targets the init; still no submodule.
    m.init = torch.nn.Tanh()
    m.reset_parameters()
    assert list(m.children()) == [] and m.init == "Tanh"
    torch.testing.assert_close(m.heights[0].double(), torch.tanh(torch.linspace(-3, 3, 9, dtype=torch.float64)),
                               rtol=1e-6, atol=1e-6)


# ---- the realignment ops both PWLU modules call (written once in C++) -------------------------------

def test_pwlu_realign_ops_match_formula():
    gen = torch.Generator().manual_seed(5)
    G, N, momentum = 3, 8, 0.9
    mean, std = torch.zeros(G), torch.zeros(G)
    calls = torch.zeros((), dtype=torch.int64)
    batches = [torch.randn(4, 6, 5, generator=gen) * (1 + k) + k for k in range(3)]
    ref_mean = ref_std = None
    for x in batches:  # float64 reference from the formula: per group of 2 channels along dim 1
        torch.ops.torch_rational.pwlu_update_statistics_(mean, std, calls, x, 1, momentum)
        flat = x.double().movedim(1, 0).reshape(G, -1)
        bm = flat.mean(1)
        bs = ((flat - bm[:, None]) ** 2).mean(1).sqrt()
        if ref_mean is None:
            ref_mean, ref_std = bm, bs
        else:
            ref_mean = momentum * ref_mean + (1 - momentum) * bm
            ref_std = momentum * ref_std + (1 - momentum) * bs
    assert int(calls) == len(batches)
    torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(std.double(), ref_std, rtol=1e-6, atol=1e-6)
    # The realignment's steps, as the modules take them, with gelu evaluated here.
    points = torch.ops.torch_rational.pwlu_init_points(*torch.ops.torch_rational.pwlu_realigned_bounds(mean, std), N)
    heights, bounds, slopes = torch.ops.torch_rational.pwlu_parameters_from_values(
        points, torch.nn.functional.gelu(points))
    left, right = mean.double() - 3 * std.double(), mean.double() + 3 * std.double()
    torch.testing.assert_close(bounds, torch.stack([left, right], 1))
    points = left[:, None] + (right - left)[:, None] * torch.arange(N + 1, dtype=torch.float64) / N
    torch.testing.assert_close(heights, torch.nn.functional.gelu(points), rtol=1e-12, atol=1e-12)
    exact = torch.autograd.functional.jacobian(
        lambda t: torch.nn.functional.gelu(t).sum(), torch.stack([left, right], 1))
    torch.testing.assert_close(slopes, exact, rtol=1e-6, atol=1e-6)


def test_pwlu_realign_ops_bad_arguments():
    with pytest.raises(ValueError, match="num_groups"):
        torch.ops.torch_rational.pwlu_update_statistics_(torch.zeros(3), torch.zeros(3), torch.zeros((), dtype=torch.int64),
                                                         torch.randn(2, 4), 1, 0.9)
    with pytest.raises(ValueError, match="num_pieces"):
        torch.ops.torch_rational.pwlu_init_points(torch.zeros(1), torch.ones(1), 0)


def test_pwlu_init_points_and_parameters_from_values_match_formula():
    # The two ops a module calls around its init's evaluation (a Python callable cannot enter an op).
    left = torch.tensor([-3.0, -1.0, 0.5], dtype=torch.float64)
    right = torch.tensor([3.0, 2.0, 0.75], dtype=torch.float64)
    N = 4
    points = torch.ops.torch_rational.pwlu_init_points(left, right, N)
    assert points.shape == (3, N + 5) and points.dtype == torch.float64
    h = 1e-3 * (right - left) / N
    breakpoints = torch.stack([torch.linspace(lo, hi, N + 1, dtype=torch.float64) for lo, hi in zip(left, right)])
    torch.testing.assert_close(points[:, :N + 1], breakpoints, rtol=1e-15, atol=1e-15)
    assert torch.equal(points[:, N], right)  # exactly R
    near = torch.stack([left - h, left + h, right - h, right + h], 1)
    torch.testing.assert_close(points[:, N + 1:], near, rtol=1e-15, atol=1e-15)
    heights, bounds, slopes = torch.ops.torch_rational.pwlu_parameters_from_values(points, _sin_formula(points))
    torch.testing.assert_close(heights, _sin_formula(breakpoints), rtol=1e-15, atol=1e-15)
    assert torch.equal(bounds, torch.stack([left, right], 1))
    # A central difference's error is at most h^2 / 6 times the largest third derivative (|cos| <= 1).
    err = (slopes - _sin_derivative(torch.stack([left, right], 1))).abs()
    assert (err <= (h**2 / 6)[:, None] + 1e-12).all()
    mean, std = torch.tensor([0.5, -2.0, 1e4]), torch.tensor([1.0, 0.0, 0.0])
    lo, hi = torch.ops.torch_rational.pwlu_realigned_bounds(mean, std)
    half = torch.tensor([3.0, 2e-3, 10.0], dtype=torch.float64)  # 3 std, else 1e-3 max(|mean|, 1)
    torch.testing.assert_close(lo, mean.double() - half, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hi, mean.double() + half, rtol=1e-12, atol=1e-12)


def test_pwlu_parameters_from_values_bad_arguments():
    points = torch.ops.torch_rational.pwlu_init_points(torch.zeros(2), torch.ones(2), 3)
    with pytest.raises(ValueError, match="values"):
        torch.ops.torch_rational.pwlu_parameters_from_values(points, points[:, :-1])
    with pytest.raises(ValueError, match="points"):
        torch.ops.torch_rational.pwlu_parameters_from_values(points[:, :4], points[:, :4])
    with pytest.raises(ValueError, match="non-finite"):
        torch.ops.torch_rational.pwlu_parameters_from_values(points, points.log())  # log of negatives: NaN
    with pytest.raises(ValueError, match="init returned non-finite"):
        torch_rational.PWLU(4, init=lambda x: torch.log(x))
    with pytest.raises(ValueError, match="running_std"):
        torch.ops.torch_rational.pwlu_realigned_bounds(torch.zeros(2), torch.zeros(3))
