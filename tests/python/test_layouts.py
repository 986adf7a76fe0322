"""Grouped parameters on channel-innermost layouts (channels_last, channels_last_3d, (..., C) with
channel_dim=-1), for every family: values and all gradients against the float64 references written
from the formulas (reference.py, reference_era.py, test_pwlu.pwlu_reference), special values,
gradcheck and determinism.

On these layouts the CPU kernels take the channel walk (csrc/ops/cpu/group_layout.h): a vector holds
consecutive channels, each lane with its own group's parameters. C = 20 channels: a full vector and
a partial one on AVX-512 (16 lanes), two full and a partial one on AVX2 (8 lanes).
"""

from __future__ import annotations

import math
import sys

import pytest
import torch
import torch_rational
from conftest import (
    Tolerance,
    assert_close_scaled,
    check_against_reference,
    dtype_id,
    make_case,
    make_generator,
    seed_of,
    tolerance,
)
from test_era import check_all as check_era_against_reference
from test_era import make_params as make_era_params
from test_pwlu import (
    _math_breakpoints,
    assert_close as assert_close_pwlu,
    away_from_breakpoints,
    element_scale,
    group_index,
    make_params as make_pwlu_params,
    reference_with_grads as pwlu_reference_with_grads,
)
from test_rational_op import check_grads_against_reference

F = torch_rational.functional
C = 20
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
GROUPS = [1, 2, C // 2, C]


# Each layout: (shape of the logical tensor, channel_dim, a function giving the tensor in the layout
# from a contiguous one with the same values, whether the channel walk applies (stride 1 along the
# channel dim after the kernel's own contiguous() of non-dense input)).
def _last_dim_strided(x):
    # (T, C) with channel stride 2: not dense, so the kernel makes it contiguous (then (T, C), C last).
    wide = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=x.dtype)
    wide[:, ::2] = x
    return wide[:, ::2]


def _channels_last_sliced(x):
    # channels_last with every other W column: not dense, made contiguous (NCHW): the run walk.
    wide = torch.zeros(*x.shape[:3], 2 * x.shape[3], dtype=x.dtype).contiguous(memory_format=torch.channels_last)
    wide[..., ::2] = x
    return wide[..., ::2]


LAYOUTS = {
    "channels_last": ((2, C, 5, 3), 1, lambda x: x.contiguous(memory_format=torch.channels_last)),
    "channels_last_3d": ((2, C, 3, 2, 3), 1, lambda x: x.contiguous(memory_format=torch.channels_last_3d)),
    "last_2d": ((29, C), -1, lambda x: x),
    "last_3d": ((2, 13, C), -1, lambda x: x),
    "strided_last_2d": ((29, C), -1, _last_dim_strided),
    "sliced_channels_last": ((2, C, 5, 3), 1, _channels_last_sliced),
}
DENSE_LAYOUTS = ["channels_last", "channels_last_3d", "last_2d", "last_3d"]


def in_layout(x, layout):
    shape, cdim, to_layout = LAYOUTS[layout]
    y = to_layout(x)
    assert torch.allclose(y, x, rtol=0, atol=0, equal_nan=True)
    # Dense layouts: empty_like keeps the strides of a non-overlapping dense tensor.
    if layout in DENSE_LAYOUTS:
        assert y.stride(cdim) == 1 and y.stride() == torch.empty_like(y).stride(), "not channel-innermost"
    else:
        assert y.stride() != torch.empty_like(y).stride(), "expected a non-dense tensor"
    return y


def grads_of(fn, x, params, g):
    """y and the gradients of y w.r.t. x and params for grad_output g (x keeps its layout)."""
    xs = x.detach().requires_grad_(True)  # same strides (a clone would make a non-dense x dense)
    ps = [p.detach().clone().requires_grad_(True) for p in params]
    y = fn(xs, *ps)
    grads = torch.autograd.grad(y, [xs] + ps, g)
    return (y.detach(),) + tuple(grads)


# ------------------------------------------------------------------------------------------------
# Rational


def rational_case(layout, degrees, version, basis, groups, dtype, seed):
    shape, cdim, _ = LAYOUTS[layout]
    x, num, den = make_case(shape, degrees, version, basis, groups, seed=seed, dtype=dtype, channel_dim=cdim)
    g = torch.randn(shape, generator=make_generator(seed + 1), dtype=torch.float64).to(dtype)
    return in_layout(x, layout), num, den, in_layout(g, layout), cdim


def check_rational(layout, degrees, version, basis, groups, dtype):
    x, num, den, g, cdim = rational_case(layout, degrees, version, basis, groups, dtype,
                                         seed_of(layout, degrees, version, basis, groups, dtype))

    def fn(x, a, b):
        return F.rational(x, a, b, version=version, basis=basis, channel_dim=cdim)

    got = grads_of(fn, x, (num, den), g)
    check_against_reference(got[0], x, num, den, version, basis, cdim)
    check_grads_against_reference(x, num, den, g, version, basis, cdim, got)


@pytest.mark.parametrize("layout", DENSE_LAYOUTS)
@pytest.mark.parametrize("basis", ["power", "chebyshev_t", "legendre", "laguerre"])
@pytest.mark.parametrize("version", ["A", "B", "C", "N"])
def test_rational_versions_and_bases(version, basis, layout):
    check_rational(layout, (5, 4), version, basis, C, torch.float32)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("groups", GROUPS, ids=lambda g: f"G{g}")
def test_rational_groups_dtypes(groups, dtype, layout):
    check_rational(layout, (5, 4), "A", "power", groups, dtype)


@pytest.mark.parametrize("layout", ["channels_last", "last_2d"])
@pytest.mark.parametrize("degrees", [(3, 2), (7, 6), (3, 3)], ids=lambda d: f"m{d[0]}n{d[1]}")
def test_rational_other_degrees(degrees, layout):
    # (3, 3) has no vector specialisation: the channel walk's scalar path.
    check_rational(layout, degrees, "B", "power", C // 2, torch.float32)


@pytest.mark.parametrize("layout", ["channels_last", "last_2d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("version", ["A", "B", "C", "N"])
def test_rational_power_large_inf_nan(version, dtype, layout):
    """Power basis with |x| beyond the float32 overflow threshold, +-inf and NaN among ordinary
    values, per-channel coefficients: finite elements against the float64 reference; the special
    elements as the same op gives them on the contiguous layout (G = C along channel_dim = 1 of an
    NCHW tensor: the group-constant-run walk that test_rational_edges.py checks), NaN staying in
    its own element."""
    shape, cdim, _ = LAYOUTS[layout]
    seed = seed_of("special", version, dtype, layout)
    x, num, den = make_case(shape, (5, 4), version, "power", C, seed=seed, dtype=dtype, channel_dim=cdim)
    flat = x.view(-1)
    specials = torch.tensor([1e30, -3e29, float("inf"), float("-inf"), float("nan"), 7e37, -1e38, 2e15])
    positions = torch.arange(specials.numel()) * 7 + 3  # different channels, different vectors
    flat[positions] = specials.to(dtype)
    g = torch.randn(shape, generator=make_generator(seed + 1), dtype=torch.float64).to(dtype)
    x, g = in_layout(x, layout), in_layout(g, layout)

    def fn(x, a, b):
        return F.rational(x, a, b, version=version, channel_dim=cdim)

    y, gx, _, _ = grads_of(fn, x, (num, den), g)
    # The run walk on the same values: channel as dim 1 of a contiguous (rows, C, 1) tensor.
    rows = x.numel() // C
    x_run = x.detach().contiguous().reshape(-1, C) if cdim == -1 else x.detach().movedim(1, -1).reshape(-1, C)
    g_run = g.contiguous().reshape(-1, C) if cdim == -1 else g.movedim(1, -1).reshape(-1, C)
    y_run, gx_run, _, _ = grads_of(lambda x, a, b: F.rational(x, a, b, version=version, channel_dim=1),
                                   x_run.reshape(rows, C, 1), (num, den), g_run.reshape(rows, C, 1))
    to_rows = (lambda t: t.contiguous().reshape(-1, C)) if cdim == -1 else (lambda t: t.movedim(1, -1).reshape(-1, C))
    special = torch.zeros(x.numel(), dtype=torch.bool)
    special[positions] = True
    special = special.reshape(shape)
    special_rows = to_rows(special)
    for name, got, run in (("y", y, y_run), ("grad_x", gx, gx_run)):
        got_r, run_r = to_rows(got)[special_rows], run.reshape(-1, C)[special_rows]
        assert torch.equal(torch.isnan(got_r), torch.isnan(run_r)), f"{name}: NaN positions differ"
        ok = ~torch.isnan(run_r)
        torch.testing.assert_close(got_r[ok].double(), run_r[ok].double(), rtol=2e-6 if dtype == torch.float32
                                   else 8e-3, atol=0, msg=lambda m: f"{name} at the special elements: {m}")
    # Ordinary elements: the float64 reference (its own ones for the same x with the specials
    # replaced by 0, as they do not influence other elements).
    clean = torch.where(special, torch.zeros((), dtype=dtype), x.detach())
    nan_free = ~torch.isnan(y)
    assert torch.equal(nan_free | special, torch.ones_like(special)), "NaN outside the NaN element"
    from reference import error_scales, rational_reference

    ref = rational_reference(clean, num, den, version, "power", cdim)
    scale = error_scales(clean, num, den, None, version, "power", cdim)["y"]
    tol = Tolerance(2.0**-23 if dtype == torch.float32 else 2.0**-7, 2e-5, 1e-37)
    assert_close_scaled(y[~special], ref[~special], scale[~special], tol, "y (ordinary elements)")


def test_rational_gradcheck_channels_last():
    # float64 (scalar math) on a channels_last tensor with per-channel and per-pair groups.
    for groups in (C, 2):
        x, num, den = make_case((1, C, 2, 2), (3, 2), "A", "power", groups, seed=7 + groups, dtype=torch.float64)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        args = (x, num.requires_grad_(), den.requires_grad_())
        assert torch.autograd.gradcheck(lambda *a: F.rational(*a, version="A"), args)


# ------------------------------------------------------------------------------------------------
# ERA


def era_case(layout, groups, n, dtype, seed):
    shape, cdim, _ = LAYOUTS[layout]
    gen = make_generator(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2).to(dtype)
    lin, fr = make_era_params(groups, n, gen=gen, dtype=dtype)
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return in_layout(x, layout), lin, fr, in_layout(g, layout), cdim


# n = 1 in every dtype; n = 2 and n = 5 (no vector specialisation: the scalar path) in two.
ERA_N_DTYPES = [(1, d) for d in DTYPES] + [(n, d) for n in (2, 5) for d in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("groups", GROUPS, ids=lambda g: f"G{g}")
@pytest.mark.parametrize("n,dtype", ERA_N_DTYPES, ids=lambda v: dtype_id(v) if isinstance(v, torch.dtype) else f"n{v}")
def test_era_layouts(n, dtype, groups, layout):
    x, lin, fr, g, cdim = era_case(layout, groups, n, dtype, seed_of("era", n, groups, dtype, layout))
    y, gx, glin, gfr = grads_of(lambda x, l, f: F.era(x, l, f, channel_dim=cdim), x, (lin, fr), g)
    check_era_against_reference(x, lin, fr, g, y, gx, glin, gfr, channel_dim=cdim)


@pytest.mark.parametrize("layout", ["channels_last", "last_2d"])
def test_era_zero_slope_lanes_at_infinity(layout):
    """Groups with a = 0 next to groups with a != 0 in one vector: at x = +-inf the line's limit is
    b where a = 0 and a x + b elsewhere (era_linear), lane by lane."""
    shape, cdim, _ = LAYOUTS[layout]
    gen = make_generator(11)
    lin, fr = make_era_params(C, 1, gen=gen)
    lin[::3, 0] = 0.0
    x = torch.full(shape, float("inf"))
    x.view(-1)[1::2] = float("-inf")
    x = in_layout(x, layout)
    y = F.era(x, lin, fr, channel_dim=cdim)
    ch = torch.arange(C).reshape([C] + [1] * (x.dim() - 2)) if cdim == 1 else torch.arange(C)
    a = lin[:, 0][ch].expand(x.shape).double()
    b = lin[:, 1][ch].expand(x.shape).double()
    # The limit of a x + b (the fractions vanish): b for a = 0, else a x = +-inf.
    expected = torch.where(a == 0, b, a * x.double())
    assert torch.equal(y.double(), expected), "x = +-inf: not the limit of the line lane by lane"


def test_era_gradcheck_last_dim():
    gen = make_generator(5)
    x = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    lin, fr = make_era_params(3, 1, gen=gen, dtype=torch.float64)
    args = (x.requires_grad_(), lin.requires_grad_(), fr.requires_grad_())
    assert torch.autograd.gradcheck(lambda a, b, c: F.era(a, b, c, eps=1e-3, channel_dim=-1), args)


# ------------------------------------------------------------------------------------------------
# PWLU


# N = 5 in every dtype; N = 40 (more pieces than lanes) in two.
PWLU_N_DTYPES = [(5, d) for d in DTYPES] + [(40, d) for d in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("groups", GROUPS, ids=lambda g: f"G{g}")
@pytest.mark.parametrize("n,dtype", PWLU_N_DTYPES, ids=lambda v: dtype_id(v) if isinstance(v, torch.dtype) else f"N{v}")
def test_pwlu_layouts(n, dtype, groups, layout):
    shape, cdim, _ = LAYOUTS[layout]
    gen = make_generator(seed_of("pwlu", n, groups, dtype, layout))
    heights, bounds, slopes = make_pwlu_params(groups, n, gen=gen)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3).to(dtype)
    x = away_from_breakpoints(x, heights, bounds, cdim, margin=1e-2)
    # |g| >= 1/4: a float16 grad_x below the normal range would be rounded more coarsely than the
    # relative tolerance of test_pwlu.assert_close allows (it has no absolute term).
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    g = (g.sign() * (0.25 + g.abs())).to(dtype)
    x, g = in_layout(x, layout), in_layout(g, layout)
    check_pwlu(x, g, (heights, bounds, slopes), cdim)


def check_pwlu(x, g, params, cdim, with_param_grads=True):
    """y, grad_x and (with_param_grads) the parameter gradients of F.pwlu against the float64
    reference. Infinite y or grad_x must be the reference's exactly; a NaN x has a NaN grad_x (the
    op's rule, test_pwlu.test_nan_stays_in_its_element), where the reference's where() has a number."""
    heights, bounds, slopes = params
    dtype, groups = x.dtype, heights.shape[0]
    got = grads_of(lambda *a: F.pwlu(*a, channel_dim=cdim), x, params, g)
    ref = pwlu_reference_with_grads(x, heights, bounds, slopes, g, cdim)
    scale = element_scale(x, heights, bounds, slopes, cdim)
    ref_gx = ref[1].masked_fill(torch.isnan(x), math.nan)
    for name, a, e, s in (("y", got[0], ref[0], scale), ("grad_x", got[1], ref_gx, scale * g.double().abs())):
        inf = torch.isinf(e)
        assert torch.equal(a.double()[inf], e[inf]), f"{name}: infinite values differ"
        assert_close_pwlu(a.double().masked_fill(inf, 0), e.masked_fill(inf, 0), s, dtype, dtype, name)
    if not with_param_grads:
        return
    # A parameter gradient sums the per-element terms of its group: the error scales with that sum.
    gi = group_index(x, groups, cdim)
    g64 = g.double().abs()
    total = torch.zeros(groups, dtype=torch.float64).index_add_(0, gi.reshape(-1), (scale * g64).reshape(-1))
    for name, a, e in zip(("heights", "bounds", "slopes"), got[2:], ref[2:]):
        assert a.dtype == torch.float32 and a.shape == e.shape
        assert_close_pwlu(a, e, total[:, None].expand(e.shape), dtype, torch.float32, f"grad_{name}")


# N: select trees of 4 (N <= 4), 8 and 16 leaves, N = 9 with leaves past N, N = 17 and 40: gathers.
@pytest.mark.parametrize("layout", ["channels_last", "last_2d"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 8, 9, 16, 17, 40])
def test_pwlu_every_piece_per_lane(n, layout):
    """G = C, every channel with its own parameters; x in the middle of every piece of its own
    channel, left and right of its bounds, exactly on them, +-inf and NaN, rotated by the channel so
    that the lanes of a vector are in different pieces. The channel walk fetches each lane's heights
    from its own channel's rows: y and grad_x against the float64 reference (every element), the
    parameter gradients on the finite elements."""
    gen = make_generator(seed_of("pwlu_every_piece", n, layout))
    heights, bounds, slopes = make_pwlu_params(C, n, gen=gen)
    b = bounds.double()
    d = (b[:, 1] - b[:, 0]) / n
    values = [b[:, 0] + (k + 0.5) * d for k in range(n)]  # each (C,): one value per channel
    values += [b[:, 0] - 0.7, b[:, 1] + 0.7, b[:, 0], b[:, 1]]
    values += [torch.full((C,), v, dtype=torch.float64) for v in (math.inf, -math.inf, math.nan)]
    table = torch.stack(values).float()  # (V, C)
    V = table.shape[0]
    rows, channels = torch.arange(2 * V)[:, None], torch.arange(C)[None, :]
    if layout == "last_2d":
        cdim, to_x = -1, lambda t: t
    else:
        cdim, to_x = 1, lambda t: t.reshape(2, V, 1, C).movedim(-1, 1).contiguous(memory_format=torch.channels_last)

    def x_of(table):  # (2V, C): row r, channel c holds the channel's value (r + c) % V
        x = to_x(table[(rows + channels) % V, channels])
        assert x.stride(cdim) == 1
        return x

    g = torch.randn(2 * V, C, generator=gen, dtype=torch.float64)
    g = to_x((g.sign() * (0.25 + g.abs())).float())
    check_pwlu(x_of(table), g, (heights, bounds, slopes), cdim, with_param_grads=False)
    finite = table.clone()
    finite[-3:] = table[n]  # +-inf and NaN -> left of L
    check_pwlu(x_of(finite), g, (heights, bounds, slopes), cdim)


@pytest.mark.parametrize("layout", ["channels_last", "last_2d"])
def test_pwlu_every_breakpoint_per_channel(layout):
    """x exactly on the float32 breakpoints x_k = fma(k, d, L) of its own channel's group (each
    group with its own bounds): y = Y_k and dy/dx = the slope of piece k (not piece k - 1), lane by
    lane; x = NaN stays NaN with a NaN gradient."""
    shape, cdim, _ = LAYOUTS[layout]
    n = 7
    gen = make_generator(3)
    heights, bounds, slopes = make_pwlu_params(C, n, gen=gen)
    rows = torch.zeros(C, n + 1, dtype=torch.float64)
    for c in range(C):
        rows[c] = torch.tensor(_math_breakpoints(bounds[c, 0].item(), bounds[c, 1].item(), n, torch.float32))
    # Element (row r, channel c) holds breakpoint k = r % n of channel c (row n: NaN).
    x_rows = torch.empty(n + 1, C)
    for r in range(n):
        x_rows[r] = rows[:, r].float()
    x_rows[n] = float("nan")
    total = torch.Size(shape).numel() // C
    reps = -(-total // (n + 1))
    x_rc = x_rows.repeat(reps, 1)[:total]  # (rows, C)
    k_rc = torch.arange(n + 1).repeat(reps)[:total]
    if cdim == -1:
        x = x_rc.reshape(shape)
    else:
        nhwc = (shape[0],) + tuple(shape[2:]) + (C,)
        x = x_rc.reshape(nhwc).movedim(-1, 1)
    x = in_layout(x.contiguous(), layout)
    g = torch.ones(shape)
    y, gx, _, _, _ = grads_of(lambda *a: F.pwlu(*a, channel_dim=cdim), x, (heights, bounds, slopes), g)
    to_rows = (lambda t: t.reshape(-1, C)) if cdim == -1 else (lambda t: t.movedim(1, -1).reshape(-1, C))
    y_rc, gx_rc = to_rows(y).double(), to_rows(gx).double()
    h = heights.double()
    width = (bounds[:, 1] - bounds[:, 0]).double()
    for r in range(total):
        k = int(k_rc[r])
        if k == n:
            assert torch.isnan(y_rc[r]).all() and torch.isnan(gx_rc[r]).all(), "NaN x: NaN y and grad"
            continue
        torch.testing.assert_close(y_rc[r], h[:, k], rtol=0, atol=4e-7 * (1 + h.abs().max().item()))
        slope = (h[:, k + 1] - h[:, k]) * n / width
        torch.testing.assert_close(gx_rc[r], slope, rtol=2e-6, atol=1e-6)


def test_pwlu_gradcheck_channels_last():
    gen = make_generator(8)
    heights, bounds, slopes = make_pwlu_params(4, 5, gen=gen, dtype=torch.float64)
    x = (torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64) * 3)
    x = away_from_breakpoints(x, heights, bounds, 1, margin=1e-2).contiguous(memory_format=torch.channels_last)
    args = [t.requires_grad_() for t in (x, heights, bounds, slopes)]
    assert torch.autograd.gradcheck(lambda *a: F.pwlu(*a, channel_dim=1), args, eps=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# Many rows: the channel walk cuts a task into blocks of whole rows (32768 elements: 1638 rows of
# C = 20), walks each vector of channels down a block's rows and flushes its float32 accumulators
# every 128 rows; the layouts above have at most 30 rows. And whole vectors in one group (C / G a
# multiple of the lanes, 8 or 16), where PWLU takes the group's parameters for the whole vector.

# name: (shape, channel_dim, to_layout, group counts)
MANY_ROWS = {
    "last_2d_many_rows": ((3500, C), -1, lambda x: x, (C, 2)),
    "channels_last_many_rows": ((2, C, 42, 42), 1, lambda x: x.contiguous(memory_format=torch.channels_last), (C, 2)),
    "last_2d_group_vectors": ((700, 64), -1, lambda x: x, (2, 4)),
}


@pytest.mark.parametrize("layout", list(MANY_ROWS))
@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_many_rows(family, layout, monkeypatch):
    shape, cdim, to_layout, group_counts = MANY_ROWS[layout]
    monkeypatch.setitem(LAYOUTS, layout, (shape, cdim, to_layout))
    monkeypatch.setattr(sys.modules[__name__], "DENSE_LAYOUTS", DENSE_LAYOUTS + [layout])
    for groups in group_counts:
        if family == "rational":
            check_rational(layout, (5, 4), "A", "power", groups, torch.float32)
        elif family == "era":
            test_era_layouts(1, torch.float32, groups, layout)
        else:
            test_pwlu_layouts(5, torch.float32, groups, layout)


# ------------------------------------------------------------------------------------------------
# Determinism: per-task, per-channel float64 partials summed in a fixed order


def _all_families(x, cdim, groups):
    gen = make_generator(99)
    a, b = torch_rational.init_coefficients("leaky_relu", (5, 4))
    a = (a.repeat(groups, 1) + 0.1 * torch.randn(groups, 6, generator=gen)).float()
    b = (b.repeat(groups, 1) + 0.1 * torch.randn(groups, 4, generator=gen)).float()
    lin, fr = make_era_params(groups, 1, gen=gen)
    h, bd, s = make_pwlu_params(groups, 16, gen=gen)
    return [
        (lambda x, a, b: F.rational(x, a, b, channel_dim=cdim), (a, b)),
        (lambda x, l, f: F.era(x, l, f, channel_dim=cdim), (lin, fr)),
        (lambda x, h, bd, s: F.pwlu(x, h, bd, s, channel_dim=cdim), (h, bd, s)),
    ]


@pytest.mark.parametrize("layout", ["channels_last", "last_2d"])
def test_bitwise_reproducible_for_a_fixed_thread_count(layout, default_threads):
    # Enough elements for several tasks (16384 elements each).
    shape = (4, 768, 4, 4) if layout == "channels_last" else (64, 768)
    cdim = 1 if layout == "channels_last" else -1
    gen = make_generator(1)
    x = torch.randn(shape, generator=gen) * 3
    g = torch.randn(shape, generator=gen)
    if layout == "channels_last":
        x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for fn, params in _all_families(x, cdim, 768):
            first = grads_of(fn, x, params, g)
            second = grads_of(fn, x, params, g)
            for a, b in zip(first, second):
                assert torch.equal(a, b), f"{threads} threads: two runs differ"


# ------------------------------------------------------------------------------------------------
# The backward channel walk (walk_channel_block_backward) with part of the gradients requested,
# through the backward ops' output_mask: grad_x alone (no parameter-gradient sums kept), the
# parameter gradients alone (no grad_x written), or all; on many rows, so the float32 sums of a
# vector of channels are flushed into the float64 partials several times. For the rational op
# (power basis), |x| beyond the float32 vector threshold is scattered over the rows: those vectors take the scalar
# float64 path, which adds straight into the partials, next to vectors in the float32 sums. Their
# grad_output is 0, so they contribute exactly 0 and the other lanes of those vectors are checked
# at the precision of ordinary elements.

OUTPUT_MASKS = {"all": [True, True, True], "grad_x_only": [True, False, False], "params_only": [False, True, True]}


def _many_rows_case(layout, monkeypatch):
    shape, cdim, to_layout, _ = MANY_ROWS[layout]
    monkeypatch.setitem(LAYOUTS, layout, (shape, cdim, to_layout))
    monkeypatch.setattr(sys.modules[__name__], "DENSE_LAYOUTS", DENSE_LAYOUTS + [layout])
    return shape, cdim


def _assert_requested(mask, got, expected, names):
    """got[i] against expected[i] = (reference, error scale, tolerance) where mask[i]; None elsewhere."""
    for wanted, value, (ref, scale, tol), name in zip(mask, got, expected, names):
        if wanted:
            assert value is not None, f"{name} requested but not returned"
            assert_close_scaled(value, ref, scale, tol, name)


@pytest.mark.parametrize("mask", list(OUTPUT_MASKS))
@pytest.mark.parametrize("layout", ["last_2d_many_rows", "channels_last_many_rows"])
@pytest.mark.parametrize("basis", ["power", "legendre"])
@pytest.mark.parametrize("version", ["A", "B", "C", "N"])
def test_rational_channel_walk_backward_output_mask(version, basis, layout, mask, monkeypatch):
    from reference import error_scales, rational_reference_grads

    shape, cdim = _many_rows_case(layout, monkeypatch)
    x, num, den, g, cdim = rational_case(layout, (5, 4), version, basis, C, torch.float32,
                                         seed_of("walk mask", version, basis, layout))
    if basis == "power":
        # Every 37th element (other channels and rows each time) beyond the float32 vector
        # threshold (FLT_MAX^(1/7) ~ 3e5 for degrees (5,4)), with grad_output 0 there.
        big = torch.zeros(x.numel(), dtype=torch.bool)
        big[5::37] = True
        big = big.reshape(shape)
        x = torch.where(big, torch.where(x >= 0, 1e9, -1e9).to(x.dtype), x.detach())
        g = torch.where(big, torch.zeros((), dtype=g.dtype), g)
        x, g = in_layout(x, layout), in_layout(g, layout)
    got = torch.ops.torch_rational.rational_backward(g, x, num, den, version, basis, cdim, 0.0, None,
                                                     OUTPUT_MASKS[mask])
    _, rgx, rga, rgb = rational_reference_grads(x, num, den, g, version, basis, cdim)
    s = error_scales(x, num, den, g, version, basis, cdim)
    tol = tolerance(torch.float32)
    _assert_requested(OUTPUT_MASKS[mask], got,
                      [(rgx, s["grad_x"], tol), (rga, s["grad_numerator"], tol), (rgb, s["grad_denominator"], tol)],
                      ["grad_x", "grad_numerator", "grad_denominator"])


@pytest.mark.parametrize("mask", list(OUTPUT_MASKS))
@pytest.mark.parametrize("layout", ["last_2d_many_rows", "channels_last_many_rows"])
def test_era_channel_walk_backward_output_mask(layout, mask, monkeypatch):
    from reference_era import era_error_scales, era_reference_grads, parameter_grad_scales
    from test_era import era_tolerance

    _many_rows_case(layout, monkeypatch)
    x, lin, fr, g, cdim = era_case(layout, C, 1, torch.float32, seed_of("era walk mask", layout))
    got = torch.ops.torch_rational.era_backward(g, x, lin, fr, 1e-6, cdim, OUTPUT_MASKS[mask])
    _, rgx, rgl, rgf = era_reference_grads(x, lin, fr, g, 1e-6, cdim)
    _, sgx, _, _ = era_error_scales(x, lin, fr, g, 1e-6, cdim)
    sl, sf = parameter_grad_scales(x, lin, fr, g, 1e-6, cdim)
    tol = era_tolerance(torch.float32)
    _assert_requested(OUTPUT_MASKS[mask], got, [(rgx, sgx, tol), (rgl, sl, tol), (rgf, sf, tol)],
                      ["grad_x", "grad_linear", "grad_fractions"])
