"""Edge cases of the rational op: x = +-inf.

Power basis: y and every gradient at x = +-inf are the limits as x -> +-inf of their values at
finite x (docs/DESIGN.md, Math). The reference below computes those limits exactly, with Python
fractions, from the formula of docs/DESIGN.md: on each half-line far enough out, |x^k| = (s x)^k,
|S| = sign(S) S with a fixed sign, so y, dy/dx, dy/da_j and dy/db_k are quotients of polynomials in
t = |x| (x = s t), whose limit at t -> inf follows from their degrees and leading coefficients.
Nothing here calls the code under test to get an expected value.

Other bases at +-inf: not special-cased; y is NaN or the limit (see test_other_bases_at_inf).
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

import torch_rational
from conftest import DEVICES, seed_of
from reference import BASES, VERSIONS, denominator_length, rational_reference

rational = torch_rational.functional.rational
INF = float("inf")


# ------------------------------------------------------------------------------------------------
# Exact polynomial arithmetic on lists of Fractions (index = power of t).


def _trim(p):
    p = list(p)
    while p and p[-1] == 0:
        p.pop()
    return p


def _add(p, q):
    n = max(len(p), len(q))
    return _trim([(p[i] if i < len(p) else 0) + (q[i] if i < len(q) else 0) for i in range(n)])


def _scale(p, c):
    return _trim([c * v for v in p])


def _mul(p, q):
    if not p or not q:
        return []
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, u in enumerate(p):
        for j, v in enumerate(q):
            out[i + j] += u * v
    return _trim(out)


def _deriv(p):
    return _trim([i * p[i] for i in range(1, len(p))])


def _limit(num, den):
    """lim_{t -> +inf} num(t) / den(t) as a float (den is not identically 0)."""
    num, den = _trim(num), _trim(den)
    assert den
    if not num:
        return 0.0
    c = num[-1] / den[-1]
    e = len(num) - len(den)
    if e > 0:
        return math.copysign(INF, c)
    if e == 0:
        return float(c)
    return 0.0


def _sign(v):
    return (v > 0) - (v < 0)


def limits_at_inf(a, b, version, s):
    """(y, dy/dx, [dy/da_j], [dy/db_i]) at x = s * inf (s = +-1), power basis, from exact limits."""
    a = [Fraction(float(v)) for v in a]
    b = [Fraction(float(v)) for v in b]
    k0 = 0 if version == "C" else 1
    # P(x) with x = s t, as a polynomial in t.
    P = _trim([a[j] * s**j for j in range(len(a))])
    # S(x) = sum b_k x^k as a polynomial in t; the constant of Q.
    S = [Fraction(0)] * (len(b) + k0)
    for i, v in enumerate(b):
        S[i + k0] = v * s ** (i + k0)
    S = _trim(S)
    const = Fraction(0.1) if version == "C" else Fraction(1)  # the kernels' constant is the double 0.1
    sig = _sign(S[-1]) if S else 0  # sign of S for large t
    if version == "A":
        absS = [Fraction(0)] * (len(b) + k0)
        for i, v in enumerate(b):
            absS[i + k0] = abs(v)  # |b_k| |x|^k = |b_k| t^k
        Q = _add([const], absS)
        dQdb = [[Fraction(0)] * (i + k0) + [Fraction(_sign(v))] for i, v in enumerate(b)]
    elif version == "N":
        Q = _add([const], S)
        dQdb = [[Fraction(0)] * (i + k0) + [Fraction(s ** (i + k0))] for i in range(len(b))]
    else:
        Q = _add([const], _scale(S, sig))
        dQdb = [[Fraction(0)] * (i + k0) + [Fraction(sig * s ** (i + k0))] for i in range(len(b))]
    Q2 = _mul(Q, Q)
    y = _limit(P, Q)
    # d/dx = s d/dt
    dydx = _limit(_scale(_add(_mul(_deriv(P), Q), _scale(_mul(P, _deriv(Q)), -1)), s), Q2)
    da = [_limit([Fraction(0)] * j + [Fraction(s**j)], Q) for j in range(len(a))]
    db = [_limit(_scale(_mul(P, d), -1), Q2) for d in dQdb]
    return y, dydx, da, db


# ------------------------------------------------------------------------------------------------


def _same(actual: float, expected: float, rtol: float) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    if math.isinf(expected) or expected == 0.0:
        return actual == expected
    return abs(actual - expected) <= rtol * abs(expected)


def _assert_limits(x_dtype, y, gx, ga, gb, a, b, version, s, count):
    """y and grad_x of one element at s * inf; ga / gb: count such elements with grad_output 1."""
    ey, edx, eda, edb = limits_at_inf(a, b, version, s)
    rtol = {torch.float64: 1e-12, torch.float32: 1e-6}.get(x_dtype, 1e-2)
    assert _same(float(y), ey, rtol), (s, float(y), ey)
    assert _same(float(gx), edx, rtol), (s, float(gx), edx)
    for j, (got, exp) in enumerate(zip(ga.tolist(), eda)):
        assert _same(got, count * exp, 1e-6), ("da", j, s, got, count * exp)
    for i, (got, exp) in enumerate(zip(gb.tolist(), edb)):
        assert _same(got, count * exp, 1e-6), ("db", i, s, got, count * exp)


def _random_coefs(m, n, version, gen, zero_top):
    a = torch.randn(m + 1, generator=gen, dtype=torch.float64)
    b = torch.randn(denominator_length(version, n), generator=gen, dtype=torch.float64)
    # zero_top: how many leading numerator / denominator coefficients are 0 (all of them too).
    za, zb = zero_top
    if za:
        a[len(a) - za:] = 0
    if zb:
        b[len(b) - zb:] = 0
    return a.float(), b.float()


ZERO_TOPS = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 1), (1, 2), (3, 3), (99, 0), (0, 99), (99, 99)]
DEGREES = [(5, 4), (4, 4), (3, 2), (7, 6), (2, 1), (0, 1), (1, 3), (9, 8)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16],
                         ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("degrees", DEGREES, ids=lambda d: f"{d[0]}_{d[1]}")
@pytest.mark.parametrize("version", VERSIONS)
def test_power_basis_limits_at_inf(version, degrees, dtype, device):
    m, n = degrees
    gen = torch.Generator().manual_seed(seed_of("inf", version, m, n))
    for zero_top in ZERO_TOPS:
        a, b = _random_coefs(m, n, version, gen, zero_top)
        for s in (1, -1):
            # 37 equal elements: the vectorised body (16 / 8 lanes) and the scalar tail both see them.
            count = 37
            x = torch.full((count,), s * INF, dtype=dtype, device=device, requires_grad=True)
            an = a.clone().to(device).requires_grad_(True)
            bn = b.clone().to(device).requires_grad_(True)
            y = rational(x, an, bn, version=version, basis="power")
            y.backward(torch.ones_like(y))
            for e in (0, count - 1):
                _assert_limits(dtype, y[e].detach().double(), x.grad[e].double(), an.grad.double(), bn.grad.double(),
                               a, b, version, s, count)


@pytest.mark.parametrize("device", DEVICES)
def test_version_n_sign_at_inf(device):
    # y = x^2 / (1 - x): -inf at +inf, +inf at -inf; slope -1 at both ends.
    x = torch.tensor([INF, -INF], device=device, requires_grad=True)
    a = torch.tensor([0.0, 0.0, 1.0], device=device)
    b = torch.tensor([-1.0], device=device)
    y = rational(x, a, b, version="N")
    assert y.tolist() == [-INF, INF]
    y.sum().backward()
    assert x.grad.tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("version", VERSIONS)
def test_inf_among_finite_values(version, dtype, device):
    # Grouped NCHW with +-inf and NaN scattered: every finite element matches the float64 reference,
    # every infinite one its limit, NaN stays NaN; grad_x of the others stays finite.
    gen = torch.Generator().manual_seed(seed_of("mixed", version))
    x = (torch.randn(2, 4, 50, generator=gen, dtype=torch.float64) * 2).to(dtype)
    x[0, 1, 3] = INF
    x[1, 2, 17] = -INF
    x[1, 3, 40] = INF
    x[0, 0, 7] = float("nan")
    a = torch.randn(2, 6, generator=gen, dtype=torch.float64).float()
    b = torch.randn(2, denominator_length(version, 4), generator=gen, dtype=torch.float64).float()
    a[1, 5] = 0  # group 1: p < m
    xd = x.to(device).requires_grad_(True)
    y = rational(xd, a.to(device), b.to(device), version=version, channel_dim=1)
    y.backward(torch.ones_like(y))
    y, gx = y.detach().cpu(), xd.grad.cpu()
    finite = torch.isfinite(x)
    ref = rational_reference(x, a, b, version, "power", 1)
    assert torch.allclose(y[finite].double(), ref[finite], rtol=1e-4, atol=1e-5)
    assert torch.isfinite(gx[finite]).all()
    assert torch.isnan(y[0, 0, 7]) and torch.isnan(gx[0, 0, 7])
    for idx in ((0, 1, 3), (1, 2, 17), (1, 3, 40)):
        g = idx[1] // 2
        s = 1 if x[idx] > 0 else -1
        ey, edx, _, _ = limits_at_inf(a[g], b[g], version, s)
        assert _same(float(y[idx]), ey, 1e-6), (idx, float(y[idx]), ey)
        assert _same(float(gx[idx]), edx, 1e-6), (idx, float(gx[idx]), edx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("basis", [b for b in BASES if b != "power"])
@pytest.mark.parametrize("version", VERSIONS)
def test_other_bases_at_inf(version, basis, device):
    # Not special-cased: the plain evaluation, which at +-inf gives NaN (inf - inf in the
    # recurrence or inf / inf in P / Q) or, where no such form arises, the limit. Never a wrong
    # finite value: compare with the limit of the same function evaluated at a large finite x in
    # float64 (the basis polynomials have leading coefficient prod(alpha_k) != 0).
    gen = torch.Generator().manual_seed(seed_of("other", version, basis))
    for m, n in ((5, 4), (0, 1), (1, 1), (2, 3)):
        a = torch.randn(m + 1, generator=gen, dtype=torch.float64).float()
        b = torch.randn(denominator_length(version, n), generator=gen, dtype=torch.float64).float()
        x = torch.tensor([INF, -INF] * 10, device=device)
        y = rational(x, a.to(device), b.to(device), version=version, basis=basis).cpu()
        for s in (1, -1):
            got = y[0 if s == 1 else 1].item()
            if math.isnan(got):
                continue
            far = rational_reference(torch.tensor([s * 1e30], dtype=torch.float64), a, b, version, basis)
            v = far.item()
            if abs(v) > 1e20:
                assert got == math.copysign(INF, v), (m, n, s, got, v)
            else:
                assert abs(got - v) <= 1e-4 * (1 + abs(v)), (m, n, s, got, v)
