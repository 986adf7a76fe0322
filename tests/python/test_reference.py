"""Checks of the float64 reference itself, against numpy.polynomial and hand-written numpy.

Does not import torch_rational: this file validates the yardstick the other tests use.
"""

import numpy as np
import numpy.polynomial.chebyshev as npc
import numpy.polynomial.hermite as nph
import numpy.polynomial.hermite_e as nphe
import numpy.polynomial.laguerre as npl
import numpy.polynomial.legendre as npleg
import numpy.polynomial.polynomial as npp
import pytest
import torch

from reference import (
    BASES,
    VERSIONS,
    basis_derivatives,
    basis_functions,
    denominator_length,
    error_scales,
    expand_groups,
    kink_margin,
    rational_reference,
    rational_reference_grads,
)

DEGREE = 16
X = np.concatenate([np.linspace(-3.0, 3.0, 61), np.array([-7.5, -0.0123, 0.0, 0.37, 5.25, 9.0])])


def _unit(k):
    c = np.zeros(k + 1)
    c[k] = 1.0
    return c


def _chebyshev_u_vander(x, degree):
    # U_k = T'_{k+1} / (k + 1): an independent route through numpy's Chebyshev-T series.
    return np.stack([npc.chebval(x, npc.chebder(_unit(k + 1))) / (k + 1) for k in range(degree + 1)], -1)


NUMPY_VANDER = {
    "power": npp.polyvander,
    "chebyshev_t": npc.chebvander,
    "chebyshev_u": _chebyshev_u_vander,
    "hermite": nph.hermvander,
    "hermite_e": nphe.hermevander,
    "laguerre": npl.lagvander,
    "legendre": npleg.legvander,
}

NUMPY_MODULE = {
    "power": (npp.polyder, npp.polyval),
    "chebyshev_t": (npc.chebder, npc.chebval),
    "hermite": (nph.hermder, nph.hermval),
    "hermite_e": (nphe.hermeder, nphe.hermeval),
    "laguerre": (npl.lagder, npl.lagval),
    "legendre": (npleg.legder, npleg.legval),
}


def _assert_columns_close(got, want, rtol=1e-11):
    # Compare column k relative to the largest |f_k| on the grid: values near roots of f_k are
    # only as accurate as their neighbours allow, in numpy as in the reference.
    scale = np.maximum(np.abs(want).max(axis=0, keepdims=True), 1.0)
    assert got.shape == want.shape
    bad = np.abs(got - want) > rtol * (np.abs(want) + scale)
    assert not bad.any(), f"{bad.sum()} mismatches, first at {np.argwhere(bad)[0]}"


def test_bases_are_the_documented_list():
    assert set(BASES) == set(NUMPY_VANDER)
    assert VERSIONS == ("A", "B", "C", "N")


@pytest.mark.parametrize("basis", BASES)
def test_basis_functions_match_numpy(basis):
    got = basis_functions(torch.from_numpy(X), DEGREE, basis).numpy()
    want = NUMPY_VANDER[basis](X, DEGREE)
    assert got.shape == want.shape == (X.size, DEGREE + 1)
    _assert_columns_close(got, want)


@pytest.mark.parametrize("basis", BASES)
def test_basis_functions_keep_input_shape(basis):
    x = torch.linspace(-2, 2, 24, dtype=torch.float64).reshape(2, 3, 4)
    f = basis_functions(x, 5, basis)
    assert f.shape == (2, 3, 4, 6)
    want = NUMPY_VANDER[basis](x.numpy().ravel(), 5).reshape(2, 3, 4, 6)
    _assert_columns_close(f.numpy().reshape(-1, 6), want.reshape(-1, 6))
    # 0-d input
    f0 = basis_functions(torch.tensor(0.7, dtype=torch.float64), 3, basis)
    assert f0.shape == (4,)
    np.testing.assert_allclose(f0.numpy(), NUMPY_VANDER[basis](np.array([0.7]), 3)[0], rtol=1e-13)


@pytest.mark.parametrize("basis", BASES)
def test_basis_derivatives_match_numpy(basis):
    got = basis_derivatives(torch.from_numpy(X), DEGREE, basis).numpy()
    if basis == "chebyshev_u":
        # U_k' = T''_{k+1} / (k + 1)
        want = np.stack([npc.chebval(X, npc.chebder(_unit(k + 1), 2)) / (k + 1) for k in range(DEGREE + 1)], -1)
    else:
        der, val = NUMPY_MODULE[basis]
        want = np.stack([val(X, der(_unit(k))) for k in range(DEGREE + 1)], -1)
    _assert_columns_close(got, want, rtol=1e-10)


@pytest.mark.parametrize("basis", BASES)
def test_basis_derivatives_match_autograd(basis):
    x = torch.linspace(-2.5, 2.5, 41, dtype=torch.float64, requires_grad=True)
    f = basis_functions(x, 8, basis)
    for k in range(9):
        (d,) = torch.autograd.grad(f[:, k].sum(), x, retain_graph=True)
        np.testing.assert_allclose(basis_derivatives(x.detach(), 8, basis)[:, k].numpy(), d.numpy(),
                                   rtol=1e-12, atol=1e-9)


def _numpy_rational(x, a, b, version, basis):
    """y for one group, straight from the DESIGN.md formula with numpy's basis matrix."""
    m = a.size - 1
    k0 = 0 if version == "C" else 1
    n = b.size - 1 + k0
    F = NUMPY_VANDER[basis](x, max(m, n))
    p = F[:, : m + 1] @ a
    fd = F[:, k0 : n + 1]
    if version == "A":
        q = 1.0 + np.abs(fd) @ np.abs(b)
    elif version == "B":
        q = 1.0 + np.abs(fd @ b)
    elif version == "C":
        q = 0.1 + np.abs(fd @ b)
    else:
        q = 1.0 + fd @ b
    return p / q


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("basis", BASES)
def test_rational_reference_matches_numpy_formula(version, basis):
    rng = np.random.default_rng(7)
    m, n = 5, 4
    x = rng.normal(size=200) * 1.5
    a = rng.normal(size=m + 1)
    b = rng.normal(size=denominator_length(version, n)) * (0.01 if version == "N" else 1.0)
    got = rational_reference(torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(b), version, basis).numpy()
    np.testing.assert_allclose(got, _numpy_rational(x, a, b, version, basis), rtol=1e-11, atol=1e-11)


def test_rational_reference_known_values():
    # PAU-style (power, A): y = (1 + 2x + 3x^2) / (1 + |0.5||x| + |-0.25||x^2|) at x = 2 -> 17 / 3.
    x = torch.tensor([2.0, -1.0], dtype=torch.float64)
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    b = torch.tensor([0.5, -0.25], dtype=torch.float64)
    y = rational_reference(x, a, b, "A", "power")
    torch.testing.assert_close(y, torch.tensor([17.0 / 3.0, 2.0 / 1.75], dtype=torch.float64))
    # C: Q = 0.1 + |b0 + b1 x|; x = 2: 17 / (0.1 + |0.5 - 0.5|)
    yc = rational_reference(x, a, b, "C", "power")
    torch.testing.assert_close(yc, torch.tensor([170.0, 2.0 / (0.1 + 0.75)], dtype=torch.float64))
    # N: Q = 1 + 0.5x - 0.25x^2 -> x = 2: 17 / 1
    yn = rational_reference(x, a, b, "N", "power")
    torch.testing.assert_close(yn, torch.tensor([17.0, 2.0 / 0.25], dtype=torch.float64))
    # B: Q = 1 + |0.5x - 0.25x^2| -> x=2: 17/1; x=-1: 2/(1+0.75)
    yb = rational_reference(x, a, b, "B", "power")
    torch.testing.assert_close(yb, torch.tensor([17.0, 2.0 / 1.75], dtype=torch.float64))


def test_expand_groups_assigns_contiguous_channel_blocks():
    # C = 6 channels, G = 3 groups: channels (0,1) -> 0, (2,3) -> 1, (4,5) -> 2
    coef = torch.tensor([[10.0], [20.0], [30.0]], dtype=torch.float64)
    e = expand_groups(coef, (2, 6, 5), channel_dim=1)
    assert e.shape == (1, 6, 1, 1)
    assert e.flatten().tolist() == [10, 10, 20, 20, 30, 30]
    e_last = expand_groups(coef, (4, 5, 6), channel_dim=-1)
    assert e_last.shape == (1, 1, 6, 1)
    assert e_last.flatten().tolist() == [10, 10, 20, 20, 30, 30]
    assert expand_groups(coef[0], (4, 5), channel_dim=1).shape == (1, 1, 1)
    assert expand_groups(coef[:1], (), channel_dim=1).shape == (1,)


@pytest.mark.parametrize("version", VERSIONS)
def test_rational_reference_groups_match_per_group_numpy(version):
    rng = np.random.default_rng(3)
    G, C = 2, 4
    x = rng.normal(size=(3, C, 5)) * 2
    a = rng.normal(size=(G, 4))
    b = rng.normal(size=(G, denominator_length(version, 2))) * (0.05 if version == "N" else 1.0)
    y = rational_reference(torch.from_numpy(x), torch.from_numpy(a), torch.from_numpy(b), version, "legendre", 1)
    for c in range(C):
        g = c // (C // G)
        want = _numpy_rational(x[:, c, :].ravel(), a[g], b[g], version, "legendre").reshape(3, 5)
        np.testing.assert_allclose(y[:, c, :].numpy(), want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("version", VERSIONS)
def test_reference_gradients_match_finite_differences(version):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, dtype=torch.float64) + 0.1
    a = torch.randn(2, 4, dtype=torch.float64)
    b = torch.randn(2, denominator_length(version, 3), dtype=torch.float64) * (0.02 if version == "N" else 1.0)
    assert kink_margin(x, a, b, version, "chebyshev_t").min() > 1e-4
    fn = lambda xx, aa, bb: rational_reference(xx, aa, bb, version, "chebyshev_t", 1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x.requires_grad_(), a.requires_grad_(), b.requires_grad_()))


def test_abs_gradient_at_zero_is_zero():
    # The design fixes sign(0) = 0 for the kinks; the reference inherits it from torch autograd.
    x = torch.tensor([0.0], dtype=torch.float64)  # f_1(0) = 0 for the power basis
    a = torch.tensor([0.0, 1.0], dtype=torch.float64)
    b = torch.tensor([0.0], dtype=torch.float64)
    _, gx, ga, gb = rational_reference_grads(x, a, b, torch.ones(1), "A", "power")
    assert gb.item() == 0.0  # d/db |b| |f_1| at b = 0 and f_1 = 0
    assert gx.item() == 1.0
    _, gx, ga, gb = rational_reference_grads(x, a, torch.tensor([2.0], dtype=torch.float64), torch.ones(1), "B")
    assert gx.item() == 1.0 and gb.item() == 0.0


@pytest.mark.parametrize("version", VERSIONS)
def test_error_scales_bound_the_terms(version):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 5, dtype=torch.float64) * 2
    a = torch.randn(2, 6, dtype=torch.float64)
    b = torch.randn(2, denominator_length(version, 4), dtype=torch.float64) * (0.001 if version == "N" else 1.0)
    g = torch.randn(3, 4, 5, dtype=torch.float64)
    s = error_scales(x, a, b, g, version, "hermite", 1)
    y, gx, ga, gb = rational_reference_grads(x, a, b, g, version, "hermite", 1)
    assert s["y"].shape == x.shape and s["grad_x"].shape == x.shape
    assert s["grad_numerator"].shape == a.shape and s["grad_denominator"].shape == b.shape
    # A scale is a sum of magnitudes of the terms, so it is never below the result it bounds.
    assert torch.all(s["y"] >= y.abs() * (1 - 1e-12))
    assert torch.all(s["grad_x"] >= gx.abs() * (1 - 1e-12))
    assert torch.all(s["grad_numerator"] >= ga.abs() * (1 - 1e-12))
    assert torch.all(s["grad_denominator"] >= gb.abs() * (1 - 1e-12))
