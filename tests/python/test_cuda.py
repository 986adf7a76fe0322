"""CUDA kernels of the rational op (kernels/rational.cuh) against the float64 reference.

Skipped without CUDA. Numeric checks compare with reference.py (never with the op itself); the
CPU-vs-CUDA checks compare two implementations with each other, and determinism compares a run
with itself, which is what they test. Sizes are chosen to exercise the kernel paths: the 16-byte
vector loop and its scalar tail, several blocks per group, the fixed-degree specialisations
((5,4), (4,4), (3,2), (7,6)) and the generic path (other degrees, RPAU noise).
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    DTYPES,
    FULL_PRECISION_DTYPES,
    HAS_CUDA,
    assert_close_scaled,
    assert_rational_grads_close,
    check_against_reference,
    dtype_id,
    forward_backward,
    make_case,
    make_generator,
    make_x,
    rational_matrix,
    seed_of,
    tolerance,
)
from reference import BASES, VERSIONS, error_scales

pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")

if HAS_CUDA:
    import torch_rational

    rational = torch_rational.functional.rational
    raw_rational = torch.ops.torch_rational.rational
    raw_rational_backward = torch.ops.torch_rational.rational_backward

# Fixed-degree kernels and two generic ones (a lower and a higher degree).
DEGREES = [(5, 4), (4, 4), (3, 2), (7, 6), (2, 1), (9, 8)]
# (shape, channel_dim, groups): G = 1 (one run, vector loop + tail), G = 2, per-channel with a
# spatial run that is a multiple of every vector width (16 elements), and per-channel with an odd
# run (scalar path).
SHAPES = {
    "G1": ((3, 4, 37), 1, 1),
    "G2": ((3, 4, 16), 1, 2),
    "per_channel": ((2, 8, 16), 1, 8),
    "per_channel_odd": ((2, 6, 7), 1, 6),
}


def run_with_grads(x, num, den, grad_output, **kwargs):
    return forward_backward(rational, x, num, den, grad_output, **kwargs)


def check_grads(x, num, den, g, version, basis, channel_dim, got, name=""):
    _, gx, ga, gb = got
    assert gx.device.type == "cuda" and ga.device.type == "cuda" and gb.device.type == "cuda"
    assert gx.dtype == x.dtype and ga.dtype == num.dtype and gb.dtype == den.dtype
    assert_rational_grads_close(x, num, den, g, version, basis, channel_dim, got, name)


@pytest.mark.parametrize("basis,version,degrees,sname,dtype", list(rational_matrix(DEGREES, {s: s for s in SHAPES})))
def test_cuda_forward_backward_match_reference(basis, version, degrees, sname, dtype):
    shape, cdim, groups = SHAPES[sname]
    seed = seed_of("cuda", basis, version, degrees, sname, dtype)
    half = dtype == torch.float16
    x, num, den = make_case(shape, degrees, version, basis, groups, dtype=dtype, device="cuda", seed=seed,
                            channel_dim=cdim, x_scale=1.0 if half else 2.0)
    g = make_x(shape, gen=make_generator(seed + 1), scale=1.0 / 64 if half else 1.0, dtype=dtype).cuda()
    got = run_with_grads(x, num, den, g, version=version, basis=basis, channel_dim=cdim)
    check_against_reference(got[0], x, num, den, version, basis, cdim)
    check_grads(x, num, den, g, version, basis, cdim, got)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("groups", [1, 4, 64])
def test_cuda_large_tensor_many_blocks(groups, dtype):
    # Several blocks per group, vector loop, partials over many blocks, fixed-order finish.
    shape = (16, 64, 33, 31)  # odd spatial size: per-run tails with G > 1 go through the scalar loop
    seed = seed_of("large", groups, dtype)
    half = dtype == torch.float16
    x, num, den = make_case(shape, (5, 4), "A", "power", groups, dtype=dtype, device="cuda", seed=seed,
                            x_scale=1.0 if half else 2.0)
    g = make_x(shape, gen=make_generator(seed + 1), scale=1.0 / 1024 if half else 1.0, dtype=dtype).cuda()
    got = run_with_grads(x, num, den, g, version="A", basis="power", channel_dim=1)
    check_against_reference(got[0], x, num, den, "A", "power", 1)
    check_grads(x, num, den, g, "A", "power", 1, got)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_cuda_vectorised_run_with_tail_and_misaligned_start(dtype):
    # A view starting one element into its storage is not 16-byte aligned: scalar path.
    seed = seed_of("misaligned", dtype)
    base, num, den = make_case((1 + 4 * 1031,), (5, 4), "B", "power", 1, dtype=dtype, device="cuda", seed=seed,
                               one_d=True)
    for x in (base, base[1:], base[:-3]):
        g = torch.ones_like(x)
        got = run_with_grads(x, num, den, g, version="B", basis="power")
        check_against_reference(got[0], x, num, den, "B", "power", 1)
        check_grads(x, num, den, g, "B", "power", 1, got)


def test_cuda_more_groups_than_grid_y():
    # gridDim.y is capped at 65535; blocks then loop over the groups.
    groups = 65536 + 7
    seed = seed_of("many-groups")
    x, num, den = make_case((2, groups, 3), (3, 2), "A", "power", groups, device="cuda", seed=seed)
    g = torch.ones_like(x)
    got = run_with_grads(x, num, den, g, version="A", basis="power", channel_dim=1)
    check_against_reference(got[0], x, num, den, "A", "power", 1)
    check_grads(x, num, den, g, "A", "power", 1, got)


@pytest.mark.parametrize("dtype", FULL_PRECISION_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("degrees", [(5, 4), (9, 8)], ids=["fixed", "generic"])
def test_cuda_huge_inputs_use_scaled_form(degrees, dtype):
    # |x| far above the overflow threshold: the kernels switch to the 1/x form instead of inf/nan.
    x, num, den = make_case((2, 4, 8), degrees, "A", "power", 2, dtype=dtype, device="cuda",
                            seed=seed_of("huge", degrees, dtype))
    x[0, :, :4] = 1e30
    x[1, :, :4] = -3e29
    g = torch.ones_like(x)
    got = run_with_grads(x, num, den, g, version="A", basis="power", channel_dim=1)
    assert torch.isfinite(got[0]).all()
    check_against_reference(got[0], x, num, den, "A", "power", 1)
    check_grads(x, num, den, g, "A", "power", 1, got)


# ------------------------------------------------------------------------------------------------
# Layouts and empty tensors


LAYOUTS = {
    "channels_last": ((4, 8, 5, 6), lambda t: t.contiguous(memory_format=torch.channels_last), 1),
    "transposed": ((6, 8, 5), lambda t: t.permute(2, 1, 0), 1),
    "sliced": ((3, 16, 40), lambda t: t[:, ::2, 1::3], 1),
    "expanded": ((3, 8, 1), lambda t: t.expand(3, 8, 33), 1),
    "channel_last_dim": ((4, 9, 8), lambda t: t, -1),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=dtype_id)
@pytest.mark.parametrize("groups", [1, 2, "per_channel"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_cuda_layouts_match_cpu_and_reference(layout, groups, dtype):
    shape, view, cdim = LAYOUTS[layout]
    channels = view(torch.empty(shape)).shape[cdim]
    groups = channels if groups == "per_channel" else groups
    seed = seed_of("layout", layout, groups, dtype)
    # channel_dim only steers make_case's kink avoidance, and version A's kinks (x = 0) do not depend on it.
    base, num, den = make_case(shape, (5, 4), "A", "power", groups, dtype=dtype, seed=seed, channel_dim=cdim)
    x = view(base.cuda())
    y = rational(x, num.cuda(), den.cuda(), channel_dim=cdim)
    assert y.shape == x.shape
    check_against_reference(y, x, num, den, "A", "power", cdim)
    # Same values on CPU (the CPU kernel has its own layout handling).
    torch.testing.assert_close(y.cpu(), rational(view(base), num, den, channel_dim=cdim), rtol=2e-2, atol=1e-5)
    g = make_x(x.shape, gen=make_generator(seed + 1), scale=1.0, dtype=dtype)
    got = run_with_grads(x, num.cuda(), den.cuda(), g.cuda(), channel_dim=cdim)
    check_grads(x, num, den, g, "A", "power", cdim, got)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("x_shape,groups", [((0,), 1), ((0, 4, 3), 2), ((2, 4, 0), 4)], ids=str)
def test_cuda_empty_inputs(x_shape, groups, dtype):
    gen = make_generator(seed_of("empty", x_shape, groups))
    num = torch.randn(groups, 6, generator=gen).to(dtype).cuda()
    den = torch.randn(groups, 4, generator=gen).to(dtype).cuda()
    x = torch.empty(x_shape, dtype=dtype, device="cuda")
    y, gx, ga, gb = run_with_grads(x, num, den, torch.empty_like(x), channel_dim=1)
    assert y.shape == x_shape and y.device.type == "cuda"
    assert gx.shape == x_shape
    assert torch.count_nonzero(ga) == 0 and torch.count_nonzero(gb) == 0
    assert ga.shape == num.shape and gb.shape == den.shape


def test_cuda_zero_dim_input():
    x, num, den = make_case((), (5, 4), "A", "power", 1, device="cuda", seed=1, one_d=True)
    g = torch.tensor(0.5, device="cuda")
    got = run_with_grads(x, num, den, g)
    check_against_reference(got[0], x, num, den, "A", "power", 1)
    check_grads(x, num, den, g, "A", "power", 1, got)


# ------------------------------------------------------------------------------------------------
# Native low precision, mixed dtypes, NaN


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=dtype_id)
def test_cuda_low_precision_is_native(dtype):
    x, num, den = make_case((4, 8, 64), (5, 4), "A", "power", 8, dtype=dtype, device="cuda",
                            seed=seed_of("native", dtype), x_scale=1.0)
    y = rational(x, num, den)
    assert y.dtype == dtype and y.device.type == "cuda"
    check_against_reference(y, x, num, den, "A", "power", 1)


@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_bf16_activations_fp32_coefficients(version):
    seed = seed_of("amp", version)
    x, num, den = make_case((3, 4, 40), (5, 4), version, "power", 2, dtype=torch.bfloat16,
                            coef_dtype=torch.float32, device="cuda", seed=seed)
    g = make_x(x.shape, gen=make_generator(seed + 1), scale=1.0, dtype=torch.bfloat16).cuda()
    got = run_with_grads(x, num, den, g, version=version)
    assert got[0].dtype == torch.bfloat16 and got[2].dtype == torch.float32
    check_against_reference(got[0], x, num, den, version, "power", 1)
    check_grads(x, num, den, g, version, "power", 1, got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("degrees", [(5, 4), (9, 8)], ids=["fixed", "generic"])
def test_cuda_nan_stays_in_its_element(degrees, dtype):
    x, num, den = make_case((2, 4, 40), degrees, "A", "power", 2, dtype=dtype, device="cuda",
                            seed=seed_of("nan", degrees, dtype))
    x[1, 3, 7] = float("nan")  # group 1
    y, gx, ga, gb = run_with_grads(x, num, den, torch.ones_like(x), channel_dim=1)
    assert torch.isnan(y).sum() == 1 and torch.isnan(y[1, 3, 7])
    assert torch.isnan(gx).sum() == 1
    assert torch.isfinite(ga[0]).all() and torch.isfinite(gb[0]).all()  # group 0 never saw it


# ------------------------------------------------------------------------------------------------
# CPU vs CUDA, RPAU, determinism


@pytest.mark.parametrize("basis", ["power", "legendre"])
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("degrees", [(5, 4), (3, 2), (6, 3)], ids=str)
def test_cuda_agrees_with_cpu(degrees, version, basis):
    seed = seed_of("cpu-cuda", degrees, version, basis)
    x, num, den = make_case((4, 8, 50), degrees, version, basis, 4, seed=seed)
    g = make_x(x.shape, gen=make_generator(seed + 1), scale=1.0)
    cpu = run_with_grads(x, num, den, g, version=version, basis=basis)
    cuda = run_with_grads(x.cuda(), num.cuda(), den.cuda(), g.cuda(), version=version, basis=basis)
    s = error_scales(x, num, den, g, version, basis, 1)
    tol = tolerance(torch.float32)
    # Both are within tolerance of the reference; against each other allow twice that.
    tol2 = type(tol)(2 * tol.out_rtol, 2 * tol.math_rtol, 2 * tol.atol)
    for c, d, key in zip(cpu, cuda, (None, "grad_x", "grad_numerator", "grad_denominator")):
        scale = s[key] if key else error_scales(x, num, den, None, version, basis, 1)["y"]
        assert_close_scaled(d, c.double(), scale, tol2, key or "y")


@pytest.mark.parametrize("dtype", FULL_PRECISION_DTYPES, ids=dtype_id)
@pytest.mark.parametrize("version,basis", [("A", "power"), ("B", "chebyshev_t"), ("N", "hermite_e")],
                         ids=lambda v: v)
def test_cuda_noise_matches_cpu_for_same_seed(version, basis, dtype):
    # Same Philox draws on both devices: same seed, same noise (math precision apart).
    x, num, den = make_case((3, 4, 37), (5, 4), version, basis, 2, dtype=dtype, seed=seed_of("rpau", version, basis))
    if version == "N":
        den = den * 0.5
    seed = torch.tensor([987654321], dtype=torch.int64)
    y_cpu = raw_rational(x, num, den, version, basis, 1, 0.1, seed)
    y_cuda = raw_rational(x.cuda(), num.cuda(), den.cuda(), version, basis, 1, 0.1, seed).cpu()
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y_cuda, y_cpu, rtol=rtol, atol=rtol)
    g = torch.ones_like(x)
    mask = [True, True, True]
    b_cpu = raw_rational_backward(g, x, num, den, version, basis, 1, 0.1, seed, mask)
    b_cuda = raw_rational_backward(g.cuda(), x.cuda(), num.cuda(), den.cuda(), version, basis, 1, 0.1, seed, mask)
    for c, d in zip(b_cpu, b_cuda):
        torch.testing.assert_close(d.cpu(), c, rtol=10 * rtol, atol=10 * rtol)
    # A different seed gives different noise.
    other = raw_rational(x.cuda(), num.cuda(), den.cuda(), version, basis, 1, 0.1, seed + 1).cpu()
    assert (other != y_cuda).float().mean() > 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=dtype_id)
@pytest.mark.parametrize("degrees,groups", [((5, 4), 1), ((5, 4), 64), ((6, 5), 8)], ids=str)
def test_cuda_backward_is_bitwise_deterministic(degrees, groups, dtype):
    x, num, den = make_case((32, 64, 24, 24), degrees, "A", "power", groups, dtype=dtype, device="cuda",
                            seed=seed_of("det", degrees, groups, dtype))
    g = make_x(x.shape, gen=make_generator(3), scale=1.0, dtype=dtype).cuda()
    first = run_with_grads(x, num, den, g)
    for _ in range(3):
        again = run_with_grads(x, num, den, g)
        for a, b, name in zip(first, again, ("y", "grad_x", "grad_numerator", "grad_denominator")):
            assert torch.equal(a, b), f"{name} differs between two identical runs"


def test_cuda_uses_current_stream():
    x, num, den = make_case((8, 4, 256), (5, 4), "A", "power", 4, device="cuda", seed=seed_of("stream"))
    expected = rational(x, num, den)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = rational(x, num, den)
        gx, ga, gb = raw_rational_backward(torch.ones_like(x), x, num, den, "A", "power", 1, 0.0, None,
                                           [True, True, True])
    s.synchronize()
    assert torch.equal(y, expected)
    assert torch.isfinite(gx).all() and torch.isfinite(ga).all() and torch.isfinite(gb).all()


@pytest.mark.skipif(not HAS_CUDA or torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_cuda_second_device():
    x, num, den = make_case((4, 4, 32), (5, 4), "A", "power", 2, seed=seed_of("dev1"))
    y = rational(x.to("cuda:1"), num.to("cuda:1"), den.to("cuda:1"))
    assert y.device == torch.device("cuda:1")
    check_against_reference(y, x, num, den, "A", "power", 1)


def test_cuda_errors_name_the_argument():
    x = torch.randn(2, 4, 3, device="cuda")
    num = torch.randn(2, 6, device="cuda")
    with pytest.raises(ValueError, match="denominator"):
        raw_rational(x, num, torch.randn(2, 4), "A", "power", 1, 0.0, None)  # CPU denominator
    with pytest.raises(ValueError, match="grad_output"):
        raw_rational_backward(torch.ones(2, 4, 4, device="cuda"), x, num, torch.randn(2, 4, device="cuda"),
                              "A", "power", 1, 0.0, None, [True, True, True])


# ------------------------------------------------------------------------------------------------
# gradcheck, opcheck, torch.compile


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("degrees", [(5, 4), (4, 3)], ids=["fixed", "generic"])
def test_cuda_gradcheck(degrees, version, basis):
    x, num, den = make_case((2, 4, 3), degrees, version, basis, 2, dtype=torch.float64, device="cuda",
                            seed=seed_of("gc", degrees, version, basis), x_scale=1.5)

    def fn(xx, aa, bb):
        return rational(xx, aa, bb, version=version, basis=basis, channel_dim=1)

    assert torch.autograd.gradcheck(fn, (x.requires_grad_(), num.requires_grad_(), den.requires_grad_()))


@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("version,basis", [("A", "power"), ("C", "legendre"), ("N", "hermite")], ids=lambda v: v)
def test_cuda_opcheck(version, basis, requires_grad):
    x, num, den = make_case((2, 4, 3), (5, 4), version, basis, 2, device="cuda", seed=seed_of("oc", version, basis))
    if requires_grad:
        x.requires_grad_(), num.requires_grad_(), den.requires_grad_()
    torch.library.opcheck(torch.ops.torch_rational.rational.default,
                          (x, num, den, version, basis, 1, 0.0, None))
    g = torch.ones(x.shape, device="cuda")
    torch.library.opcheck(torch.ops.torch_rational.rational_backward.default,
                          (g, x.detach(), num.detach(), den.detach(), version, basis, 1, 0.0, None,
                           [True, True, True]))


def test_cuda_torch_compile_fullgraph():
    x, num, den = make_case((4, 8, 16), (5, 4), "A", "power", 8, device="cuda", seed=seed_of("compile"))

    def model(xx, aa, bb):
        return torch.sin(rational(xx, aa, bb, channel_dim=1)) * 2.0

    compiled = torch.compile(model, fullgraph=True)
    xs = x.clone().requires_grad_(True)
    a = num.clone().requires_grad_(True)
    b = den.clone().requires_grad_(True)
    out = compiled(xs, a, b)
    out.sum().backward()
    xs2 = x.clone().requires_grad_(True)
    a2 = num.clone().requires_grad_(True)
    b2 = den.clone().requires_grad_(True)
    ref = model(xs2, a2, b2)
    ref.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(xs.grad, xs2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.grad, a2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad, b2.grad, rtol=1e-5, atol=1e-5)


def test_cuda_modules_to_device():
    m = torch_rational.PAU(num_groups=4).cuda()
    x = torch.randn(2, 8, 5, 5, device="cuda", requires_grad=True)
    y = m(x)
    y.square().mean().backward()
    assert y.device.type == "cuda" and x.grad is not None
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in m.parameters())
