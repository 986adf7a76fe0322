"""ERA (torch_rational.functional.era / torch.ops.torch_rational.era / torch_rational.ERA) against
the independent float64 reference in reference_era.py (written from the formula).

The only self-comparisons are the determinism properties, which are what they test.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
import torch_rational
from conftest import (
    DTYPES,
    Tolerance,
    assert_close_scaled,
    dtype_id,
    forward_backward,
    requires_cuda,
    seed_of,
    tolerance,
)
from reference_era import era_error_scales, era_reference, era_reference_grads, parameter_grad_scales

era = torch_rational.functional.era
raw_era = torch.ops.torch_rational.era
raw_era_backward = torch.ops.torch_rational.era_backward

GROUPS = {"G1_1d": (1, True), "G1": (1, False), "G2": (2, False), "per_channel": (4, False)}
NUM_FRACTIONS = [1, 2, 3, 5]  # 1..4 have vectorised bodies, 5 takes the scalar path
CHANNEL_DIMS = [1, -1]
INIT_NAMES = ["relu", "leaky_relu", "leaky_relu_0.3", "swish", "gelu", "tanh", "identity"]


def make_params(groups, n, *, gen, dtype=torch.float32, one_d=False):
    """Random parameters on the scale of the data: |f| in [0.3, 1.5] (no near-spikes), centres e in
    [-2, 2]. Rounded to dtype, so the reference sees exactly the op's values."""
    lin = torch.randn(groups, 2, generator=gen, dtype=torch.float64)
    fr = torch.empty(groups, n, 4, dtype=torch.float64)
    fr[..., 0] = torch.randn(groups, n, generator=gen, dtype=torch.float64)
    fr[..., 1] = torch.randn(groups, n, generator=gen, dtype=torch.float64)
    fr[..., 2] = torch.rand(groups, n, generator=gen, dtype=torch.float64) * 4 - 2
    sign = torch.where(torch.rand(groups, n, generator=gen) < 0.5, -1.0, 1.0).to(torch.float64)
    fr[..., 3] = (torch.rand(groups, n, generator=gen, dtype=torch.float64) * 1.2 + 0.3) * sign
    if one_d:
        lin, fr = lin[0], fr[0]
    return lin.to(dtype), fr.to(dtype)


def make_case(shape, groups, n, *, seed, dtype=torch.float32, param_dtype=None, one_d=False, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2).to(dtype)
    lin, fr = make_params(groups, n, gen=gen, dtype=param_dtype or dtype, one_d=one_d)
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return x.to(device), lin.to(device), fr.to(device), g.to(device)


def shape_for(channel_dim):
    # C = 4 channels along channel_dim; 37 elements per (sample, channel): full vectors and a tail.
    return (3, 4, 37) if channel_dim == 1 else (3, 37, 4)


def check_all(x, lin, fr, g, y, gx, glin, gfr, *, eps=1e-6, channel_dim=1):
    ref_y, ref_gx, ref_gl, ref_gf = era_reference_grads(x.cpu(), lin.cpu(), fr.cpu(), g.cpu(), eps, channel_dim)
    sy, sgx, _, _ = era_error_scales(x.cpu(), lin.cpu(), fr.cpu(), g.cpu(), eps, channel_dim)
    tol = era_tolerance(x.dtype)
    assert y.dtype == x.dtype and gx.dtype == x.dtype
    assert glin.dtype == lin.dtype and gfr.dtype == fr.dtype
    assert glin.shape == lin.shape and gfr.shape == fr.shape
    assert_close_scaled(y, ref_y, sy, tol, "y")
    assert_close_scaled(gx, ref_gx, sgx, tol, "grad_x")
    sl, sf = parameter_grad_scales(x.cpu(), lin.cpu(), fr.cpu(), g.cpu(), eps, channel_dim)
    ptol = era_tolerance(x.dtype, lin.dtype)
    assert_close_scaled(glin, ref_gl, sl, ptol, "grad_linear")
    assert_close_scaled(gfr, ref_gf, sf, ptol, "grad_fractions")


def era_tolerance(x_dtype, out_dtype=None):
    """The suite's tolerance with a tighter arithmetic term: ERA is a handful of well-conditioned
    operations per fraction (measured worst: about 3 ulp of the error scale), so 16 ulp of float32
    (2e-5 in conftest is sized for degree-16 recurrences) still catches a 1e-4 relative slip."""
    t = tolerance(x_dtype, out_dtype)
    return Tolerance(t.out_rtol, 1e-14 if x_dtype == torch.float64 else 1e-6, t.atol)


def run_with_grads(x, lin, fr, g, **kwargs):
    return forward_backward(era, x, lin, fr, g, **kwargs)


# ------------------------------------------------------------------------------------------------
# Values and gradients against the reference


@pytest.mark.parametrize("channel_dim", CHANNEL_DIMS, ids=lambda c: f"cd{c}")
@pytest.mark.parametrize("n", NUM_FRACTIONS, ids=lambda n: f"n{n}")
@pytest.mark.parametrize("gname", list(GROUPS))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_matches_reference(dtype, gname, n, channel_dim):
    groups, one_d = GROUPS[gname]
    # Low-precision x with float32 parameters, as under autocast (mixed dtype).
    param_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x, lin, fr, g = make_case(shape_for(channel_dim), groups, n, seed=seed_of(dtype, gname, n, channel_dim),
                              dtype=dtype, param_dtype=param_dtype, one_d=one_d)
    y, gx, glin, gfr = run_with_grads(x, lin, fr, g, channel_dim=channel_dim)
    check_all(x, lin, fr, g, y, gx, glin, gfr, channel_dim=channel_dim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_eps(dtype, eps):
    x, lin, fr, g = make_case((1000,), 1, 2, seed=seed_of("eps", eps, dtype), dtype=dtype, one_d=True)
    y, gx, glin, gfr = run_with_grads(x, lin, fr, g, eps=eps)
    check_all(x, lin, fr, g, y, gx, glin, gfr, eps=eps)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_same_dtype_low_precision_parameters(dtype):
    x, lin, fr, g = make_case((2, 4, 33), 2, 1, seed=seed_of("samedtype", dtype), dtype=dtype)
    y, gx, glin, gfr = run_with_grads(x, lin, fr, g)
    assert glin.dtype == dtype and gfr.dtype == dtype
    check_all(x, lin, fr, g, y, gx, glin, gfr)


def test_large_tensor_many_tasks():
    # Several threads' tasks and many flushes of the vector accumulators.
    x, lin, fr, g = make_case((4, 8, 40000), 8, 1, seed=11)
    y, gx, glin, gfr = run_with_grads(x, lin, fr, g)
    check_all(x, lin, fr, g, y, gx, glin, gfr)


def test_zero_dim_and_empty():
    lin = torch.tensor([0.5, 0.1])
    fr = torch.tensor([[1.0, 0.5, 0.2, 0.7]])
    x0 = torch.tensor(0.3)
    y0 = era(x0, lin, fr)
    assert y0.shape == ()
    assert abs(y0.item() - era_reference(x0, lin, fr).item()) < 1e-6
    xe = torch.empty(0, 4, requires_grad=True)
    ls = lin.clone().requires_grad_(True)
    y = era(xe, ls, fr)
    assert y.shape == (0, 4)
    y.sum().backward()
    assert torch.equal(ls.grad, torch.zeros(2))
    # Grouped, with a zero-stride channel dimension (empty channels_last tensor).
    xg = torch.empty(2, 4, 0, 3).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    lg = torch.randn(2, 2, requires_grad=True)
    fg = torch.rand(2, 1, 4, requires_grad=True)
    era(xg, lg, fg, channel_dim=0).sum().backward()
    assert torch.equal(lg.grad, torch.zeros(2, 2)) and torch.equal(fg.grad, torch.zeros(2, 1, 4))


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_non_contiguous(layout):
    x, lin, fr, g = make_case((2, 4, 6, 5), 4, 2, seed=seed_of("layout", layout))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        x = x.transpose(2, 3).contiguous().transpose(2, 3)
    else:
        x = torch.cat([x, x], 3)[..., ::2]
    y, gx, glin, gfr = run_with_grads(x, lin, fr, g)
    check_all(x, lin, fr, g, y, gx, glin, gfr)


def test_large_inputs_stay_finite():
    lin = torch.tensor([0.5, 0.1])
    fr = torch.tensor([[1.0, 0.5, 0.2, 0.7], [-2.0, 0.3, -1.0, 0.4]])
    x = torch.tensor([1e30, -1e30, 3e38, -3e38] * 5, requires_grad=True)
    y = era(x, lin, fr)
    assert torch.isfinite(y).all()
    assert torch.allclose(y.double(), 0.5 * x.detach().double() + 0.1, rtol=1e-6)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(gx, torch.full_like(gx, 0.5))


def test_gradcheck():
    x, lin, fr, _ = make_case((2, 4, 3), 2, 2, seed=5, dtype=torch.float64)
    inputs = (x.requires_grad_(True), lin.requires_grad_(True), fr.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda a, b, c: era(a, b, c, eps=1e-3), inputs)


def test_gradcheck_one_d_channel_last():
    x, lin, fr, _ = make_case((3, 5, 2), 2, 1, seed=6, dtype=torch.float64)
    inputs = (x.requires_grad_(True), lin.requires_grad_(True), fr.requires_grad_(True))
    assert torch.autograd.gradcheck(lambda a, b, c: era(a, b, c, channel_dim=-1), inputs)
    x1, l1, f1, _ = make_case((7,), 1, 3, seed=7, dtype=torch.float64, one_d=True)
    assert torch.autograd.gradcheck(era, (x1.requires_grad_(), l1.requires_grad_(), f1.requires_grad_()))


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True),
                                  (True, True, True), (False, False, False)])
def test_backward_output_mask(mask):
    x, lin, fr, g = make_case((2, 4, 9), 2, 2, seed=8, dtype=torch.float64)
    gx, gl, gf = raw_era_backward(g, x, lin, fr, 1e-6, 1, list(mask))
    _, rgx, rgl, rgf = era_reference_grads(x, lin, fr, g)
    for want, got, ref in zip(mask, (gx, gl, gf), (rgx, rgl, rgf)):
        if want:
            assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
        else:
            assert got.shape == (0,)


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_opcheck(requires_grad, groups):
    x, lin, fr, g = make_case((2, 4, 5), groups, 2, seed=9, one_d=groups == 1)
    for t in (x, lin, fr):
        t.requires_grad_(requires_grad)
    torch.library.opcheck(raw_era, (x, lin, fr, 1e-6, 1))
    torch.library.opcheck(raw_era_backward, (g, x.detach(), lin.detach(), fr.detach(), 1e-6, 1, [True, True, True]))
    torch.library.opcheck(raw_era_backward, (g, x.detach(), lin.detach(), fr.detach(), 1e-6, 1, [False, True, False]))


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    x, lin, fr, g = make_case((2, 4, 16), 2, 1, seed=10)
    lin.requires_grad_(True)
    fr.requires_grad_(True)

    @torch.compile(fullgraph=True, backend="aot_eager")
    def f(x, lin, fr):
        return era(x * 2.0, lin, fr, eps=1e-6, channel_dim=1).sin()

    out = f(x, lin, fr)
    out.backward(g)
    ref = era_reference(x.double() * 2.0, lin.detach(), fr.detach()).sin()
    assert torch.allclose(out.double(), ref, rtol=1e-4, atol=1e-4)
    ls = lin.detach().double().requires_grad_(True)
    fs = fr.detach().double().requires_grad_(True)
    ref_out = era_reference(x.double() * 2.0, ls, fs).sin()
    gl_ref, gf_ref = torch.autograd.grad(ref_out, (ls, fs), g.double())
    assert torch.allclose(lin.grad.double(), gl_ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(fr.grad.double(), gf_ref, rtol=1e-4, atol=1e-4)


def test_torch_compile_module_inductor():
    torch._dynamo.reset()
    m = torch_rational.ERA(2, init="gelu", num_groups=4)
    x = torch.randn(2, 4, 8)
    compiled = torch.compile(m, fullgraph=True)
    y = compiled(x)
    ref = era_reference(x, m.linear.detach(), m.fractions.detach())
    assert torch.allclose(y.double(), ref, rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert m.fractions.grad is not None


# ------------------------------------------------------------------------------------------------
# Bad input


def _ok():
    return torch.randn(2, 4, 3), torch.randn(2, 2), torch.rand(2, 1, 4)


# Each case: the arguments that replace _ok()'s (built when the test runs), the error and its message.
BAD_INPUTS = {
    "linear_shape": (lambda: {"linear": torch.randn(2, 3)}, ValueError, "linear must have shape"),
    "fractions_shape": (lambda: {"fractions": torch.randn(2, 1, 3)}, ValueError, "fractions must have shape"),
    "mixed_grouping": (lambda: {"linear": torch.randn(2)}, ValueError, "both be ungrouped"),
    "group_mismatch": (lambda: {"fractions": torch.rand(3, 1, 4)}, ValueError,
                       "linear has 2 groups but fractions has 3"),
    "zero_groups": (lambda: {"linear": torch.randn(0, 2), "fractions": torch.rand(0, 1, 4)}, ValueError,
                    "at least one group"),
    "zero_fractions": (lambda: {"fractions": torch.rand(2, 0, 4)}, ValueError, "num_fractions"),
    "too_many_fractions": (lambda: {"fractions": torch.rand(2, 33, 4)}, ValueError, "num_fractions"),
    "not_divisible": (lambda: {"x": torch.randn(2, 3, 3)}, ValueError,
                      r"x.size\(channel_dim=1\) = 3 is not divisible"),
    "channel_dim_range": (lambda: {"channel_dim": 5}, IndexError, "channel_dim 5 is out of range"),
    "negative_eps": (lambda: {"eps": -1e-6}, ValueError, "eps must be finite and >= 0"),
    "nan_eps": (lambda: {"eps": float("nan")}, ValueError, "eps must be finite and >= 0"),
    "int_x": (lambda: {"x": torch.ones(2, 4, 3, dtype=torch.int32)}, TypeError,
              "era: x has dtype Int; supported: float16, bfloat16, float32, float64"),
    "int_linear": (lambda: {"linear": torch.ones(2, 2, dtype=torch.int64)}, TypeError,
                   "era: linear has dtype Long; supported: float16"),
    "int_fractions": (lambda: {"fractions": torch.ones(2, 1, 4, dtype=torch.int64)}, TypeError,
                      "era: fractions has dtype Long; supported: float16"),
    "grouped_scalar_x": (lambda: {"x": torch.tensor(1.0)}, ValueError, "x must have a channel dimension"),
}


@pytest.mark.parametrize("case,exc,pattern", [(case, exc, pattern) for case, (_, exc, pattern) in BAD_INPUTS.items()])
def test_bad_input(case, exc, pattern):
    x, lin, fr = _ok()
    arguments = {"x": x, "linear": lin, "fractions": fr, **BAD_INPUTS[case][0]()}
    with pytest.raises(exc, match=pattern):
        era(**arguments)


def test_bad_grad_output():
    x, lin, fr = _ok()
    with pytest.raises(ValueError, match="grad_output has shape"):
        raw_era_backward(torch.randn(2, 4), x, lin, fr, 1e-6, 1, [True, True, True])
    with pytest.raises(TypeError, match="grad_output has dtype"):
        raw_era_backward(torch.randn(2, 4, 3, dtype=torch.float64), x, lin, fr, 1e-6, 1, [True, True, True])


# ------------------------------------------------------------------------------------------------
# NaN locality, determinism


# x = +-inf (docs/era.md): y = a x + b (+-inf with the sign of a x; b when a == 0), the fractions at
# their limit 0; dy/dx = a, dy/da = x, dy/db = 1, every fraction gradient 0. The expected values
# are written from that definition, not from the op.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("n", NUM_FRACTIONS)
@pytest.mark.parametrize("a", [1.5, -0.75, 0.0])
@pytest.mark.parametrize("length", [1, 67], ids=["scalar", "vector"])
def test_infinite_x_takes_the_limit_of_the_line(a, n, dtype, length):
    gen = torch.Generator().manual_seed(seed_of("inf", a, n))
    lin, fr = make_params(1, n, gen=gen, dtype=torch.float64, one_d=True)
    lin[0] = a
    pdtype = torch.float32 if dtype == torch.bfloat16 else dtype
    lin, fr = lin.to(pdtype), fr.to(pdtype)
    b = lin[1].item()
    for sign in (1.0, -1.0):
        x = torch.full((length,), sign * float("inf"), dtype=dtype)
        g = (torch.rand(length, generator=gen, dtype=torch.float64) + 0.5).to(dtype)
        y = raw_era(x, lin, fr, 1e-6, 1)
        want = b if a == 0.0 else sign * a * float("inf")
        want_y = torch.full((length,), want, dtype=torch.float64).to(dtype)
        assert torch.equal(y, want_y), (sign, y, want_y)
        gx, glin, gfr = raw_era_backward(g, x, lin, fr, 1e-6, 1, [True, True, True])
        g64 = g.to(torch.float64)
        assert torch.equal(gx, (g64 * a).to(dtype)), (gx, g64 * a)
        assert glin[0].item() == sign * float("inf")  # sum g x, g > 0
        assert glin[1].item() == pytest.approx(g64.sum().item(), rel=1e-6)
        assert torch.equal(gfr, torch.zeros_like(gfr)), gfr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("n", NUM_FRACTIONS)
def test_infinite_and_nan_x_among_finite(n, dtype):
    """Infinite elements leave the finite ones exact (the reference), a NaN only its own element."""
    x, lin, fr, g = make_case((1, 1, 70), 1, n, seed=seed_of("inf-mix", n), dtype=dtype)
    special = {5: float("inf"), 23: float("-inf"), 40: float("nan"), 66: float("inf")}
    for i, v in special.items():
        x[0, 0, i] = v
    y = raw_era(x, lin, fr, 1e-6, 1)
    gx, glin, gfr = raw_era_backward(g, x, lin, fr, 1e-6, 1, [True, False, False])
    finite = torch.isfinite(x)
    a, b = lin.reshape(-1)[0].item(), lin.reshape(-1)[1].item()
    y64, gx64 = y.to(torch.float64), gx.to(torch.float64)
    assert torch.isnan(y).sum() == 1 and torch.isnan(y[0, 0, 40])
    assert torch.isnan(gx).sum() == 1 and torch.isnan(gx[0, 0, 40])
    for i, v in special.items():
        if v != v:
            continue
        assert y64[0, 0, i].item() == (b if a == 0 else a * v)
        assert gx64[0, 0, i].item() == pytest.approx(g[0, 0, i].item() * a, rel=1e-6)
    xf = x[finite].reshape(1, 1, -1)
    want_y, want_gx, _, _ = era_reference_grads(xf, lin, fr, g[finite].reshape(1, 1, -1), eps=1e-6)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(y64[finite], want_y.reshape(-1), rtol=tol, atol=tol)
    torch.testing.assert_close(gx64[finite], want_gx.reshape(-1), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_nan_stays_local(dtype):
    x, lin, fr, g = make_case((2, 4, 40), 2, 2, seed=12, dtype=dtype,
                              param_dtype=torch.float32 if dtype.itemsize == 2 else dtype)
    x[1, 2, 17] = float("nan")
    xs = x.clone().requires_grad_(True)
    y = era(xs, lin, fr)
    (gx,) = torch.autograd.grad(y, xs, g)
    nan_y = torch.isnan(y)
    assert nan_y.sum() == 1 and nan_y[1, 2, 17]
    nan_gx = torch.isnan(gx)
    assert nan_gx.sum() == 1 and nan_gx[1, 2, 17]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=dtype_id)
def test_deterministic(dtype, default_threads):
    x, lin, fr, g = make_case((4, 8, 20000), 8, 2, seed=13, dtype=dtype, param_dtype=torch.float32)
    first = run_with_grads(x, lin, fr, g)
    for _ in range(2):
        again = run_with_grads(x, lin, fr, g)
        for a, b in zip(first, again):
            assert torch.equal(a, b)
    # The forward and grad_x do not depend on the thread count at all.
    torch.set_num_threads(1)
    one = run_with_grads(x, lin, fr, g)
    assert torch.equal(one[0], first[0]) and torch.equal(one[1], first[1])


# ------------------------------------------------------------------------------------------------
# Fitter and init tables


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("init", INIT_NAMES)
def test_init_table_accuracy(init, n):
    assert torch.ops.torch_rational.has_era_init_table_entry(init, n)
    lin, fr = torch_rational.era_init_parameters(init, n)
    assert lin.shape == (2,) and fr.shape == (n, 4) and lin.dtype == torch.float64
    assert (fr[:, 3].abs() >= 0.1 - 1e-12).all()
    x = torch.linspace(-3, 3, 4001, dtype=torch.float64)
    err = (era_reference(x, lin, fr) - torch_rational.activation_function(init, x)).abs().max().item()
    # Shipped quality (see docs/era.md); more fractions must not be worse.
    bound = {"relu": 0.07, "leaky_relu": 0.07, "leaky_relu_0.3": 0.05, "swish": 4e-3, "gelu": 0.011,
             "tanh": 2e-3, "identity": 1e-12}[init]
    assert err <= bound / (3.0 if n == 2 and init != "identity" else 1.0)


@pytest.mark.parametrize("init", ["swish", "tanh", "relu"])
def test_module_init_matches_target(init):
    m = torch_rational.ERA(init=init, dtype=torch.float64)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    y = m(x)
    target = torch_rational.activation_function(init, x)
    assert (y - target).abs().max().item() <= {"swish": 4e-3, "tanh": 2e-3, "relu": 0.07}[init]


def test_fit_era_callable_and_name():
    r = torch_rational.fit_era(lambda t: torch.tanh(t), 1, num_points=801)
    assert r.fractions.shape == (1, 4) and r.linear.shape == (2,)
    x = torch.linspace(-3, 3, 801, dtype=torch.float64)
    err = (era_reference(x, r.linear, r.fractions) - torch.tanh(x)).abs().max().item()
    assert abs(err - r.max_error) <= 1e-12 and err < 3e-3
    lin, fr, e = torch.ops.torch_rational.fit_era("sigmoid", 1, -3.0, 3.0)
    assert e < 1e-3
    # deterministic
    lin2, fr2, e2 = torch.ops.torch_rational.fit_era("sigmoid", 1, -3.0, 3.0)
    assert torch.equal(lin, lin2) and torch.equal(fr, fr2) and e == e2


def test_fit_era_bad_input():
    with pytest.raises(ValueError, match="num_fractions"):
        torch_rational.fit_era("tanh", 0)
    with pytest.raises(ValueError, match="range"):
        torch_rational.fit_era("tanh", 1, range=(1, -1))
    with pytest.raises(ValueError, match="unknown function"):
        torch_rational.fit_era("nope", 1)
    with pytest.raises(ValueError, match="unknown function"):
        torch_rational.era_init_parameters("nope", 1)
    with pytest.raises(ValueError, match="unknown init function"):
        torch.ops.torch_rational.era_init("nope", 1)


def test_unshipped_init_is_fitted_with_warning():
    with pytest.warns(UserWarning, match="no shipped ERA init for softplus"):
        lin, fr = torch_rational.era_init_parameters("softplus", 1)
    x = torch.linspace(-3, 3, 4001, dtype=torch.float64)
    assert (era_reference(x, lin, fr) - torch.nn.functional.softplus(x)).abs().max() < 0.02


# ------------------------------------------------------------------------------------------------
# Module


def test_module_parameters_and_repr():
    m = torch_rational.ERA(2, init="gelu", num_groups=4, channel_dim=1)
    names = dict(m.named_parameters())
    assert set(names) == {"linear", "fractions"}
    assert m.linear.shape == (4, 2) and m.fractions.shape == (4, 2, 4)
    assert torch.equal(m.linear[0], m.linear[3])
    r = repr(m)
    assert "num_fractions=2" in r and "init='gelu'" in r and "num_groups=4" in r
    assert "normalize='layer'" in repr(torch_rational.ERA(normalize="layer"))


def test_module_reset_parameters():
    m = torch_rational.ERA(1, init="tanh")
    before = copy.deepcopy(m.state_dict())
    with torch.no_grad():
        m.fractions.add_(1.0)
        m.linear.mul_(3.0)
    m.reset_parameters()
    for k, v in before.items():
        assert torch.equal(m.state_dict()[k], v)


def test_module_random_init_is_stable():
    torch.manual_seed(0)
    m = torch_rational.ERA(3, init="random", num_groups=5)
    f = m.fractions[..., 3]
    assert (f.abs() >= 0.5).all() and (f.abs() <= 1.5).all()
    assert not torch.equal(m.fractions[0], m.fractions[1])
    y = m(torch.randn(2, 5, 7) * 10)
    assert torch.isfinite(y).all()


def test_module_state_dict_deepcopy_pickle():
    m = torch_rational.ERA(2, init="swish", num_groups=2)
    with torch.no_grad():
        m.fractions.add_(0.01)
    x = torch.randn(3, 2, 5)
    y = m(x)
    m2 = torch_rational.ERA(2, init="relu", num_groups=2)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2(x), y)
    assert torch.equal(copy.deepcopy(m)(x), y)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)
    assert torch.equal(pickle.loads(pickle.dumps(m))(x), y)
    m64 = copy.deepcopy(m).to(torch.float64)
    assert m64.fractions.dtype == torch.float64
    assert torch.allclose(m64(x.double()), y.double(), rtol=1e-5, atol=1e-6)


# ---- a callable init: fitted once at construction (on [-3, 3]), the fit kept, not the callable


def _silu_formula(x):
    """x sigmoid(x), written out in float64."""
    return x / (1.0 + torch.exp(-x))


def _sin_formula(x):
    """A function activation_function has no name for."""
    return torch.sin(x) + 0.5 * x


def test_module_callable_init_is_fitted_to_the_function():
    m = torch_rational.ERA(init=torch.nn.SiLU(), dtype=torch.float64)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    y = era_reference(x, m.linear[0].detach(), m.fractions[0].detach())
    assert (y - _silu_formula(x)).abs().max() <= 4e-3  # the n = 1 fit's error on [-3, 3] is 3.2e-3
    assert (y - x).abs().max() > 0.1  # a wrong fit would show: silu is not near the identity
    torch.testing.assert_close(m(x), y, rtol=1e-10, atol=1e-10)
    assert "init='SiLU'" in repr(m) and set(m.state_dict()) == {"linear", "fractions"}


def test_module_callable_init_outside_the_named_functions():
    m = torch_rational.ERA(2, init=lambda t: torch.sin(t) + 0.5 * t, num_groups=3, dtype=torch.float64)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for g in range(3):
        y = era_reference(x, m.linear[g].detach(), m.fractions[g].detach())
        assert (y - _sin_formula(x)).abs().max() <= 2e-3  # the n = 2 fit's error is 9.8e-4
    assert "init='<lambda>'" in repr(m)


def test_module_callable_init_reset_state_dict_copies_and_to():
    m = torch_rational.ERA(init=lambda t: torch.sin(t) + 0.5 * t, num_groups=2)
    x = torch.linspace(-3, 3, 600).reshape(300, 2)  # one column per group
    start = m(x).detach()
    assert ((start.double() - _sin_formula(x.double())).abs().max()) <= 1e-2  # the n = 1 fit: 6.9e-3
    with torch.no_grad():
        m.linear.add_(1.0)
        m.fractions.mul_(2.0)
    trained = m(x).detach()
    # state_dict keys and round trip as with a named init
    m2 = torch_rational.ERA(init="relu", num_groups=2)
    m2.load_state_dict(m.state_dict())
    assert torch.equal(m2(x), trained)
    # copies keep the fit (a lambda pickles: the module does not keep it); reset restores the fit
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m)), m):
        assert torch.equal(clone(x), trained) and clone.init == "<lambda>"
        clone.reset_parameters()
        assert torch.equal(clone(x), start)
    m64 = copy.deepcopy(m).to(torch.float64)
    assert m64.init_linear.dtype == torch.float64 and m64.linear.dtype == torch.float64
    with torch.no_grad():
        m64.linear.zero_()
    m64.reset_parameters()
    assert (m64(x.double()) - _sin_formula(x.double())).abs().max() <= 1e-2


def test_module_reassigning_init_name_retargets_reset():
    m = torch_rational.ERA(init=lambda t: torch.sin(t) + 0.5 * t, dtype=torch.float64)
    m.init = "tanh"
    m.reset_parameters()
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    tanh = (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1)
    assert (m(x) - tanh).abs().max() <= 2e-3 and "init='tanh'" in repr(m)
    with pytest.raises(TypeError, match="init"):
        m.init = lambda t: t


def _manual_norm(x, dims):
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def test_module_normalize_instance_and_layer():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 5, 6, generator=gen, dtype=torch.float64) * 3 + 2
    m = torch_rational.ERA(1, init="gelu", num_groups=4, normalize="instance", dtype=torch.float64)
    ref = era_reference(_manual_norm(x, (2, 3)), m.linear.detach(), m.fractions.detach())
    assert torch.allclose(m(x), ref, rtol=1e-10, atol=1e-10)
    # layer norm over the features of (batch, tokens, features)
    xt = torch.randn(3, 7, 8, generator=gen, dtype=torch.float64) * 2 - 1
    ml = torch_rational.ERA(1, normalize="layer", channel_dim=-1, dtype=torch.float64)
    ref = era_reference(_manual_norm(xt, (2,)), ml.linear.detach(), ml.fractions.detach())
    assert torch.allclose(ml(xt), ref, rtol=1e-10, atol=1e-10)
    # gradients flow through the normalisation
    xs = xt.clone().requires_grad_(True)
    ml(xs).sum().backward()
    assert torch.isfinite(xs.grad).all()
    with pytest.raises(ValueError, match="instance"):
        m(torch.randn(2, 4))


@pytest.mark.parametrize("kwargs,pattern", [
    ({"num_fractions": 0}, "num_fractions"),
    ({"num_groups": 0}, "num_groups"),
    ({"normalize": "batch"}, "normalize"),
    ({"eps": -1.0}, "eps"),
])
def test_module_bad_options(kwargs, pattern):
    args = {"num_fractions": 1, **kwargs}
    n = args.pop("num_fractions")
    with pytest.raises(ValueError, match=pattern):
        torch_rational.ERA(n, **args)


# ------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@requires_cuda
@pytest.mark.parametrize("n", [1, 2, 3, 5], ids=lambda n: f"n{n}")
@pytest.mark.parametrize("gname", list(GROUPS))
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_cuda_matches_reference(dtype, gname, n):
    groups, one_d = GROUPS[gname]
    param_dtype = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    x, lin, fr, g = make_case((3, 4, 1000), groups, n, seed=seed_of("cuda", dtype, gname, n), dtype=dtype,
                              param_dtype=param_dtype, one_d=one_d, device="cuda")
    y, gx, glin, gfr = run_with_grads(x, lin, fr, g)
    assert y.device.type == "cuda" and glin.device.type == "cuda"
    check_all(x, lin, fr, g, y, gx, glin, gfr)


@requires_cuda
def test_cuda_channels_last_large_and_deterministic():
    x, lin, fr, g = make_case((8, 16, 64, 65), 16, 1, seed=21, device="cuda")
    x = x.contiguous(memory_format=torch.channels_last)
    first = run_with_grads(x, lin, fr, g)
    again = run_with_grads(x, lin, fr, g)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    check_all(x, lin, fr, g, *first)


@requires_cuda
def test_cuda_empty_and_module():
    y = era(torch.empty(0, 4, device="cuda"), torch.randn(2, device="cuda"), torch.rand(1, 4, device="cuda"))
    assert y.shape == (0, 4)
    xg = torch.empty(2, 4, 0, 3, device="cuda").contiguous(memory_format=torch.channels_last).requires_grad_(True)
    lg = torch.randn(2, 2, device="cuda", requires_grad=True)
    fg = torch.rand(2, 1, 4, device="cuda", requires_grad=True)
    era(xg, lg, fg, channel_dim=0).sum().backward()
    assert torch.equal(fg.grad.cpu(), torch.zeros(2, 1, 4))
    m = torch_rational.ERA(1, num_groups=4).cuda()
    x = torch.randn(2, 4, 9, device="cuda")
    ref = era_reference(x.cpu(), m.linear.detach().cpu(), m.fractions.detach().cpu())
    assert torch.allclose(m(x).cpu().double(), ref, rtol=1e-5, atol=1e-5)


def test_tolerance_helper_is_strict():
    # Guards the guard: the comparison must reject a visibly wrong value.
    with pytest.raises(AssertionError):
        assert_close_scaled(torch.tensor([1.0]), torch.tensor([1.01], dtype=torch.float64),
                            torch.tensor([1.0], dtype=torch.float64), Tolerance(0.0, 1e-5, 0.0), "t")



# ------------------------------------------------------------------------------------------------
# era_normalize: the one C++ normalisation both ERA modules call (native layer_norm / group_norm)


def _old_normalize_reference(x, kind, channel_dim):
    """The normalisation the modules composed from generic ops before, in float64: biased variance
    over the spatial dims per (sample, channel) ("instance") or over channel_dim ("layer")."""
    x = x.double()
    cd = channel_dim % x.dim()
    dims = (cd,) if kind == "layer" else tuple(d for d in range(x.dim()) if d not in (0, cd))
    return _manual_norm(x, dims)


@pytest.mark.parametrize("kind, shape, channel_dim", [
    ("layer", (3, 7, 8), -1),
    ("layer", (2, 5, 4, 3), 1),
    ("layer", (6, 9), 0),
    ("instance", (2, 4, 5, 6), 1),
    ("instance", (2, 5, 6, 4), -1),
    ("instance", (3, 4, 10), 1),
])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_era_normalize_matches_old_formula(kind, shape, channel_dim, dtype):
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 2).to(dtype)
    y = torch.ops.torch_rational.era_normalize(x, kind, channel_dim)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(y.double(), _old_normalize_reference(x, kind, channel_dim), rtol=tol, atol=tol)
    assert y.dtype == dtype and y.shape == x.shape
    # Backward against autograd through the reference formula.
    xd = x.double().requires_grad_(True)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    (torch.ops.torch_rational.era_normalize(xd, kind, channel_dim) * w).sum().backward()
    xr = x.double().requires_grad_(True)
    (_old_normalize_reference(xr, kind, channel_dim) * w).sum().backward()
    torch.testing.assert_close(xd.grad, xr.grad, rtol=1e-10, atol=1e-10)


def test_era_normalize_channels_last_and_none():
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    y = torch.ops.torch_rational.era_normalize(x, "instance", 1)
    torch.testing.assert_close(y, _old_normalize_reference(x, "instance", 1), rtol=1e-12, atol=1e-12)
    assert torch.ops.torch_rational.era_normalize(x, "", 1) is x or torch.equal(
        torch.ops.torch_rational.era_normalize(x, "", 1), x)


@pytest.mark.parametrize("args, exc, pattern", [
    ((torch.randn(2, 4), "instance", 1), ValueError, "instance"),
    ((torch.randn(2, 4, 3), "instance", 0), ValueError, "channel_dim"),
    ((torch.randn(2, 4, 3), "layer", 3), IndexError, "channel_dim"),
    ((torch.randn(2, 4, 3), "batch", 1), ValueError, "normalize"),
])
def test_era_normalize_bad_arguments(args, exc, pattern):
    with pytest.raises(exc, match=pattern):
        torch.ops.torch_rational.era_normalize(*args)


def test_module_trainable_false_freezes_parameters():
    m = torch_rational.ERA(1, trainable=False)
    assert not m.linear.requires_grad and not m.fractions.requires_grad
    assert "trainable=False" in repr(m)
    x = torch.randn(8, 3, requires_grad=True)
    m(x).sum().backward()
    assert m.linear.grad is None and x.grad is not None
    assert torch_rational.ERA(1).linear.requires_grad


# ------------------------------------------------------------------------------------------------
# era_normalize on every layout: the normalised dims innermost in memory (native layer_norm on a
# view), in the middle of the memory order (the fused CPU kernels: layer norm over the channels of
# NCHW, instance norm of channels_last), and neither (layer_norm on moved dims).


def _normalized_f64(x, kind, channel_dim):
    """The formula in float64: (x - mean) / sqrt(biased var + 1e-5) over channel_dim ("layer") or
    over every dim but the batch (0) and channel_dim ("instance")."""
    x = x.double()
    cd = channel_dim % x.dim()
    dims = [cd] if kind == "layer" else [d for d in range(1, x.dim()) if d != cd]
    mean = x.mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt((x - mean).square().mean(dim=dims, keepdim=True) + 1e-5)


def _strided(shape, layout, gen, dtype):
    """x of `shape` (logical) in the memory layout named `layout`, values with a mean offset."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 2
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "channels_last_3d":
        x = x.contiguous(memory_format=torch.channels_last_3d)
    elif layout == "NHCW":  # spatial dims H, W not adjacent in memory: no block structure
        x = x.permute(0, 2, 1, 3).contiguous().permute(0, 2, 1, 3)
    return x.to(dtype)


NORMALIZE_LAYOUTS = [
    # kind, shape, channel_dim, layout          path
    ("layer", (2, 6, 5, 7), 1, "contiguous"),       # fused: (N, C, HW), over C
    ("layer", (2, 6, 5, 7), 1, "channels_last"),    # layer_norm on the (NHW, C) view
    ("instance", (2, 6, 5, 7), 1, "channels_last"),  # fused: (N, HW, C), over HW
    ("instance", (2, 6, 5, 7), 1, "contiguous"),    # layer_norm on the (NC, HW) view
    ("instance", (2, 3, 4, 5, 6), 1, "channels_last_3d"),  # fused
    ("layer", (3, 8, 50), 1, "contiguous"),         # fused
    ("layer", (40, 5), 0, "contiguous"),            # fused, one outer slice
    ("instance", (2, 6, 5, 7), 1, "NHCW"),          # layer_norm on moved dims
    ("layer", (2, 300, 1100), 1, "contiguous"),     # fused, several column blocks and a tail
]


@pytest.mark.parametrize("kind, shape, channel_dim, layout", NORMALIZE_LAYOUTS,
                         ids=lambda v: str(v).replace(" ", ""))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=dtype_id)
def test_era_normalize_layouts_match_formula(kind, shape, channel_dim, layout, dtype):
    gen = torch.Generator().manual_seed(17)
    x = _strided(shape, layout, gen, dtype)
    y = torch.ops.torch_rational.era_normalize(x, kind, channel_dim)
    assert y.dtype == dtype and y.shape == x.shape
    if layout != "NHCW":  # the block layouts keep x's strides (the others come back contiguous, as before)
        assert y.stride() == x.stride()
    tol = {torch.float64: 1e-12, torch.float32: 2e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(y.double(), _normalized_f64(x, kind, channel_dim), rtol=tol, atol=tol)
    # The input gradient against autograd through the float64 formula.
    xr = x.detach().requires_grad_(True)
    w = torch.randn(shape, generator=gen, dtype=torch.float64)
    (grad,) = torch.autograd.grad(torch.ops.torch_rational.era_normalize(xr, kind, channel_dim), xr, w.to(dtype))
    xd = x.double().requires_grad_(True)
    (want,) = torch.autograd.grad(_normalized_f64(xd, kind, channel_dim), xd, w)
    gtol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(grad.double(), want, rtol=gtol, atol=gtol * want.abs().max().item())


@pytest.mark.parametrize("kind, shape, channel_dim, layout", [
    ("layer", (2, 4, 3, 3), 1, "contiguous"),
    ("layer", (2, 4, 3, 3), 1, "channels_last"),
    ("instance", (2, 4, 3, 3), 1, "channels_last"),
    ("instance", (2, 4, 3, 3), 1, "contiguous"),
    ("instance", (2, 3, 2, 3, 2), 1, "channels_last_3d"),
    ("layer", (6, 5), 0, "contiguous"),
    ("instance", (2, 4, 3, 3), 1, "NHCW"),
], ids=lambda v: str(v).replace(" ", ""))
def test_era_normalize_layouts_gradcheck_and_second_derivatives(kind, shape, channel_dim, layout):
    x = _strided(shape, layout, torch.Generator().manual_seed(5), torch.float64).requires_grad_(True)

    def fn(t):
        return torch.ops.torch_rational.era_normalize(t, kind, channel_dim)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
    # gradgradcheck checks the second derivative against differences of the first one computed
    # with create_graph=True; that first derivative and a Hessian-vector product against the formula.
    gen = torch.Generator().manual_seed(6)
    w, v = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    for f in (fn, lambda t: _normalized_f64(t, kind, channel_dim)):
        (g1,) = torch.autograd.grad(f(x), x, w, create_graph=True)
        (hv,) = torch.autograd.grad(g1, x, v)
        if f is fn:
            got = (g1, hv)
    torch.testing.assert_close(got[0], g1, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(got[1], hv, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind, layout", [("layer", "contiguous"), ("instance", "channels_last")])
def test_era_normalize_fused_layouts_reproducible_across_thread_counts(kind, layout):
    x = _strided((4, 64, 12, 12), layout, torch.Generator().manual_seed(8), torch.float32).requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            y = torch.ops.torch_rational.era_normalize(x, kind, 1)
            results.append((y, torch.autograd.grad(y, x, g)[0]))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_era_normalize_fused_layouts_under_forward_ad_and_vmap():
    # torch.func and forward-mode AD take the composite of native ops (a C++ autograd Function
    # cannot serve them): the same values as the formula.
    x = _strided((3, 6, 4, 5), "channels_last", torch.Generator().manual_seed(2), torch.float64)
    t = torch.randn(x.shape, dtype=torch.float64)
    for kind in ("layer", "instance"):
        _, tangent = torch.func.jvp(lambda v: torch.ops.torch_rational.era_normalize(v, kind, 1), (x,), (t,))
        _, want = torch.func.jvp(lambda v: _normalized_f64(v, kind, 1), (x,), (t,))
        torch.testing.assert_close(tangent, want, rtol=1e-10, atol=1e-10)
    # vmap over the batch: layer norm over each sample's channels (dim 0 of a sample).
    batched = torch.vmap(lambda v: torch.ops.torch_rational.era_normalize(v, "layer", 0))(x)
    torch.testing.assert_close(batched, _normalized_f64(x, "layer", 1), rtol=1e-12, atol=1e-12)


def test_era_module_normalize_on_nchw_and_channels_last_matches_reference():
    gen = torch.Generator().manual_seed(4)
    for kind in ("layer", "instance"):
        m = torch_rational.ERA(1, init="gelu", num_groups=6, normalize=kind, dtype=torch.float64)
        for layout in ("contiguous", "channels_last"):
            x = _strided((2, 6, 5, 7), layout, gen, torch.float64)
            ref = era_reference(_normalized_f64(x, kind, 1), m.linear.detach(), m.fractions.detach())
            torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind, layout", [("layer", "contiguous"), ("instance", "channels_last")])
def test_era_normalize_fused_layouts_under_torch_compile(kind, layout):
    # Tracing sees fake tensors (no data, maybe symbolic sizes): they take the path of native ops.
    x = _strided((2, 8, 5, 6), layout, torch.Generator().manual_seed(12), torch.float32).requires_grad_(True)
    f = torch.compile(lambda t: torch.ops.torch_rational.era_normalize(t, kind, 1), fullgraph=True,
                      backend="aot_eager")
    y = f(x)
    torch.testing.assert_close(y.double(), _normalized_f64(x, kind, 1), rtol=2e-5, atol=2e-5)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, w.float())
    xd = x.detach().double().requires_grad_(True)
    (want,) = torch.autograd.grad(_normalized_f64(xd, kind, 1), xd, w)
    torch.testing.assert_close(grad.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


# ------------------------------------------------------------------------------------------------
# normalized_era (F.era(normalize=...), the ERA modules' forward): on CPU float32 with one group and
# up to 4 fractions one fused kernel per pass; otherwise era(era_normalize(x)). Against the float64
# formula: ERA (reference_era.py) of the normalised x (_normalized_f64).

NORMALIZED_ERA_LAYOUTS = NORMALIZE_LAYOUTS + [
    ("layer", (37, 768), -1, "contiguous"),        # fused, I = 1: one row per statistic
    ("layer", (3, 5, 33), -1, "contiguous"),        # fused, I = 1, rows of 33: vectors and a tail
    ("instance", (2, 3, 4, 50), 1, "contiguous"),   # fused, I = 1, 200-element rows
]


def _normalized_era_f64(x, lin, fr, kind, channel_dim, eps=1e-6):
    return era_reference(_normalized_f64(x, kind, channel_dim), lin.double(), fr.double(), eps, channel_dim)


def _normalized_era_grads(x, lin, fr, g, kind, channel_dim):
    """y and the gradients of <y, g> of F.era(normalize=kind) (got) and of the float64 formula (want)."""
    out = []
    for f, cast in ((lambda *a: era(*a, channel_dim=channel_dim, normalize=kind), lambda t: t),
                    (lambda *a: _normalized_era_f64(*a, kind, channel_dim), lambda t: t.double())):
        leaves = [cast(t).detach().requires_grad_(True) for t in (x, lin, fr)]
        y = f(*leaves)
        out.append((y, *torch.autograd.grad(y, leaves, cast(g))))
    return out


def _assert_close_to_max(got, want, rtol, name):
    """|got - want| <= rtol * max|want|, elementwise: the error scale of a normalised input is its
    largest value (the normalisation mixes every element of a statistic into each)."""
    err = (got.double() - want).abs().max().item()
    assert err <= rtol * max(want.abs().max().item(), 1e-30), f"{name}: error {err:.3g}, max {want.abs().max():.3g}"


@pytest.mark.parametrize("kind, shape, channel_dim, layout", NORMALIZED_ERA_LAYOUTS,
                         ids=lambda v: str(v).replace(" ", ""))
@pytest.mark.parametrize("n, groups", [(1, 1), (2, 1), (4, 1), (5, 1), (1, 2)], ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=dtype_id)
def test_normalized_era_matches_formula(kind, shape, channel_dim, layout, n, groups, dtype):
    gen = torch.Generator().manual_seed(21)
    x = _strided(shape, layout, gen, dtype)
    if groups > 1 and x.shape[channel_dim] % groups:
        pytest.skip("channels not divisible by the groups")
    lin, fr = make_params(groups, n, gen=gen, dtype=dtype, one_d=groups == 1 and n == 2)
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    (y, gx, gl, gf), (ry, rgx, rgl, rgf) = _normalized_era_grads(x, lin, fr, g, kind, channel_dim)
    assert y.dtype == dtype and y.shape == x.shape
    if layout != "NHCW":
        assert y.stride() == x.stride()
    assert gl.shape == lin.shape and gf.shape == fr.shape
    rtol = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 5e-2}[dtype]
    _assert_close_to_max(y, ry, rtol, "y")
    _assert_close_to_max(gx, rgx, 10 * rtol, "grad_x")
    _assert_close_to_max(gl, rgl, 10 * rtol, "grad_linear")
    _assert_close_to_max(gf, rgf, 10 * rtol, "grad_fractions")


@pytest.mark.parametrize("kind", ["layer", "instance"])
def test_normalized_era_module_matches_formula(kind):
    # The module's forward is F.era(normalize=...): float32, one group, n = 1 takes the fused kernels.
    m = torch_rational.ERA(1, init="gelu", normalize=kind)
    with torch.no_grad():
        m.fractions.add_(0.1)
    x = _strided((2, 6, 5, 7), "channels_last", torch.Generator().manual_seed(22), torch.float32)
    want = era_reference(_normalized_f64(x, kind, 1), m.linear.detach().double()[0], m.fractions.detach().double()[0])
    _assert_close_to_max(m(x), want, 2e-5, "y")


@pytest.mark.parametrize("kind, shape, channel_dim, layout", [
    ("layer", (2, 6, 5, 7), 1, "contiguous"),       # I > 1
    ("instance", (2, 6, 5, 7), 1, "channels_last"),  # I > 1
    ("layer", (4, 33), -1, "contiguous"),            # I = 1
], ids=lambda v: str(v).replace(" ", ""))
def test_normalized_era_second_derivatives(kind, shape, channel_dim, layout):
    # With create_graph the fused backward returns the composite's gradients, built with a graph:
    # the first derivative and a Hessian-vector product (in x, linear and fractions) against the formula.
    gen = torch.Generator().manual_seed(23)
    x = _strided(shape, layout, gen, torch.float32)
    lin, fr = make_params(1, 2, gen=gen, one_d=True)
    w, v = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    results = []
    for f, dtype in ((lambda *a: era(*a, channel_dim=channel_dim, normalize=kind), torch.float32),
                     (lambda *a: _normalized_era_f64(*a, kind, channel_dim), torch.float64)):
        leaves = [t.to(dtype).detach().requires_grad_(True) for t in (x, lin, fr)]
        grads = torch.autograd.grad(f(*leaves), leaves, w.to(dtype), create_graph=True)
        hv = torch.autograd.grad(sum((gr * vv).sum() for gr, vv in zip(grads, (v.to(dtype), *(
            torch.ones_like(t) for t in leaves[1:])))), leaves)
        results.append((*grads, *hv))
    for name, got, want in zip(("gx", "glin", "gfr", "hx", "hlin", "hfr"), *results):
        _assert_close_to_max(got, want, 1e-3, name)


@pytest.mark.parametrize("kind, shape, channel_dim, layout", [
    ("layer", (4, 64, 12, 12), 1, "contiguous"),
    ("instance", (4, 64, 12, 12), 1, "channels_last"),
    ("layer", (700, 64), -1, "contiguous"),  # more tasks than the backward's 256 chunks
], ids=lambda v: str(v).replace(" ", ""))
def test_normalized_era_reproducible_across_thread_counts(kind, shape, channel_dim, layout):
    gen = torch.Generator().manual_seed(24)
    x = _strided(shape, layout, gen, torch.float32)
    lin, fr = make_params(1, 1, gen=gen)
    g = torch.randn(shape, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(_normalized_era_grads(x, lin, fr, g, kind, channel_dim)[0])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


def test_normalized_era_nan_stays_in_its_statistic():
    # A NaN poisons the mean and variance of its own statistic (as layer_norm), no other.
    x = torch.randn(3, 40, 16)
    x[1, 7, 5] = float("nan")
    lin, fr = make_params(1, 1, gen=torch.Generator().manual_seed(25))
    xr = x.clone().requires_grad_(True)
    y = era(xr, lin, fr, channel_dim=-1, normalize="layer")
    (gx,) = torch.autograd.grad(y, xr, torch.ones_like(y))
    poisoned = torch.zeros_like(x, dtype=torch.bool)
    poisoned[1, 7, :] = True
    assert y[poisoned].isnan().all() and gx[poisoned].isnan().all()
    want = _normalized_era_f64(x, lin, fr, "layer", -1)
    _assert_close_to_max(y[~poisoned], want[~poisoned], 2e-5, "y")
    assert torch.isfinite(gx[~poisoned]).all()


def test_normalized_era_under_compile_forward_ad_and_vmap():
    # Tracing, forward-mode AD and torch.func take era(era_normalize(x)): the same function.
    gen = torch.Generator().manual_seed(26)
    x = _strided((2, 8, 5, 6), "channels_last", gen, torch.float32)
    lin, fr = make_params(1, 1, gen=gen)
    want = _normalized_era_f64(x, lin, fr, "instance", 1)
    f = torch.compile(lambda t: era(t, lin, fr, normalize="instance"), fullgraph=True, backend="aot_eager")
    _assert_close_to_max(f(x), want, 2e-5, "compiled")
    t = torch.randn(x.shape, generator=gen)
    _, tangent = torch.func.jvp(lambda u: era(u, lin, fr, normalize="instance"), (x,), (t,))
    _, want_t = torch.func.jvp(lambda u: _normalized_era_f64(u, lin, fr, "instance", 1), (x.double(),), (t.double(),))
    _assert_close_to_max(tangent, want_t, 1e-4, "jvp")
    batched = torch.vmap(lambda u: era(u, lin, fr, channel_dim=0, normalize="layer"))(x)
    _assert_close_to_max(batched, _normalized_era_f64(x, lin, fr, "layer", 1), 2e-5, "vmap")


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"normalize": "batch"}, ValueError, "normalize"),
    ({"normalize": "instance", "channel_dim": 0}, ValueError, "channel_dim"),
    ({"normalize": "layer", "channel_dim": 4}, IndexError, "channel_dim"),
    ({"normalize": "layer", "eps": -1.0}, ValueError, "eps"),
    ({"normalize": "layer", "fractions": torch.zeros(1, 3)}, ValueError, "fractions"),
])
def test_normalized_era_bad_arguments(kwargs, exc, pattern):
    lin, fr = make_params(1, 1, gen=torch.Generator().manual_seed(27))
    args = {"fractions": fr, **kwargs}
    fractions = args.pop("fractions")
    with pytest.raises(exc, match=pattern):
        era(torch.randn(2, 4, 3, 3), lin, fractions, **args)
