"""Independent float64 reference for the rational activation family, written from docs/DESIGN.md.

Nothing here imports torch_rational: the tests compare the package against this module, and
test_reference.py checks this module against numpy.polynomial.

    P(x) = sum_{j=0..m} a_j f_j(x)
    A: Q = 1 + sum_{k=1..n} |b_k| |f_k(x)|
    B: Q = 1 + |sum_{k=1..n} b_k f_k(x)|
    C: Q = 0.1 + |sum_{k=0..n} b_k f_k(x)|
    N: Q = 1 + sum_{k=1..n} b_k f_k(x)
    y = P / Q

f_0 = 1, f_{-1} = 0, f_{k+1} = (alpha_k x + beta_k) f_k - gamma_k f_{k-1}.

Channel groups: numerator (G, m+1), denominator (G, n) [(G, n+1) for C]; channel c of x along
channel_dim uses group c // (C / G). 1-D coefficient tensors mean G = 1 (any x shape, 0-d too).
Noise (RPAU) is not modelled here.

Gradients come from torch.autograd on these float64 expressions, where d|v|/dv = sign(v) and
sign(0) = 0, as the design asks.
"""

from __future__ import annotations

import torch

BASES = ("power", "chebyshev_t", "chebyshev_u", "hermite", "hermite_e", "laguerre", "legendre")
VERSIONS = ("A", "B", "C", "N")
MAX_DEGREE = 32


def recurrence(basis: str, k: int) -> tuple[float, float, float]:
    """(alpha_k, beta_k, gamma_k) of f_{k+1} = (alpha_k x + beta_k) f_k - gamma_k f_{k-1}."""
    if basis == "power":
        return 1.0, 0.0, 0.0
    if basis == "chebyshev_t":
        return (1.0 if k == 0 else 2.0), 0.0, 1.0
    if basis == "chebyshev_u":
        return 2.0, 0.0, 1.0
    if basis == "hermite":
        return 2.0, 0.0, 2.0 * k
    if basis == "hermite_e":
        return 1.0, 0.0, float(k)
    if basis == "laguerre":
        return -1.0 / (k + 1), (2.0 * k + 1.0) / (k + 1), k / (k + 1.0)
    if basis == "legendre":
        return (2.0 * k + 1.0) / (k + 1), 0.0, k / (k + 1.0)
    raise ValueError(f"unknown basis {basis!r}")


def basis_functions(x: torch.Tensor, degree: int, basis: str) -> torch.Tensor:
    """f_0..f_degree at x (float64), stacked on a new last dim: shape x.shape + (degree + 1,).

    Differentiable with respect to x.
    """
    x = x.to(torch.float64)
    cols = [torch.ones_like(x)]
    prev = torch.zeros_like(x)
    for k in range(degree):
        alpha, beta, gamma = recurrence(basis, k)
        nxt = (alpha * x + beta) * cols[-1] - gamma * prev
        prev = cols[-1]
        cols.append(nxt)
    return torch.stack(cols, dim=-1)


def basis_derivatives(x: torch.Tensor, degree: int, basis: str) -> torch.Tensor:
    """f'_0..f'_degree at x by differentiating the recurrence:
    f'_{k+1} = alpha_k f_k + (alpha_k x + beta_k) f'_k - gamma_k f'_{k-1}."""
    x = x.to(torch.float64)
    f = [torch.ones_like(x)]
    df = [torch.zeros_like(x)]
    f_prev = torch.zeros_like(x)
    df_prev = torch.zeros_like(x)
    for k in range(degree):
        alpha, beta, gamma = recurrence(basis, k)
        lin = alpha * x + beta
        f_next = lin * f[-1] - gamma * f_prev
        df_next = alpha * f[-1] + lin * df[-1] - gamma * df_prev
        f_prev, df_prev = f[-1], df[-1]
        f.append(f_next)
        df.append(df_next)
    return torch.stack(df, dim=-1)


def first_denominator_index(version: str) -> int:
    """k of the first denominator coefficient: b_0 for C, b_1 for A/B/N."""
    if version not in VERSIONS:
        raise ValueError(f"unknown version {version!r}")
    return 0 if version == "C" else 1


def denominator_length(version: str, n: int) -> int:
    """Number of denominator coefficients per group for denominator degree n."""
    return n + 1 if version == "C" else n


def degrees_of(numerator: torch.Tensor, denominator: torch.Tensor, version: str) -> tuple[int, int]:
    m = numerator.shape[-1] - 1
    n = denominator.shape[-1] - 1 + first_denominator_index(version)
    return m, n


def expand_groups(coef: torch.Tensor, x_shape, channel_dim: int) -> torch.Tensor:
    """Coefficients (G, K) or (K,) -> a tensor broadcastable to x_shape + (K,).

    Channel c of x along channel_dim uses row c // (C / G). Differentiable (plain indexing).
    """
    ndim = len(x_shape)
    if coef.dim() == 1:
        return coef.reshape((1,) * ndim + (coef.shape[0],))
    groups, k = coef.shape
    if groups == 1:
        return coef[0].reshape((1,) * ndim + (k,))
    cdim = channel_dim % ndim
    channels = x_shape[cdim]
    assert channels % groups == 0, (channels, groups)
    per_group = channels // groups
    index = torch.arange(channels, device=coef.device) // per_group
    per_channel = coef[index]  # (C, K)
    shape = [1] * ndim + [k]
    shape[cdim] = channels
    return per_channel.reshape(shape)


def _parts(x, numerator, denominator, version, basis, channel_dim):
    """Float64 pieces of the formula: basis values, expanded coefficients, P, S and Q."""
    x = x.to(torch.float64)
    a = numerator.to(torch.float64)
    b = denominator.to(torch.float64)
    m, n = degrees_of(a, b, version)
    k0 = first_denominator_index(version)
    f = basis_functions(x, max(m, n), basis)
    a_e = expand_groups(a, x.shape, channel_dim)
    b_e = expand_groups(b, x.shape, channel_dim)
    p = (f[..., : m + 1] * a_e).sum(-1)
    f_den = f[..., k0 : n + 1]
    if version == "A":
        s = (b_e.abs() * f_den.abs()).sum(-1)
        q = 1.0 + s
    elif version == "B":
        s = (b_e * f_den).sum(-1)
        q = 1.0 + s.abs()
    elif version == "C":
        s = (b_e * f_den).sum(-1)
        q = 0.1 + s.abs()
    else:  # N
        s = (b_e * f_den).sum(-1)
        q = 1.0 + s
    return dict(x=x, m=m, n=n, k0=k0, f=f, a_e=a_e, b_e=b_e, p=p, s=s, q=q)


def rational_reference(x, numerator, denominator, version="A", basis="power", channel_dim=1):
    """y = P(x) / Q(x) in float64 (no noise). Differentiable in x, numerator and denominator."""
    parts = _parts(x, numerator, denominator, version, basis, channel_dim)
    return parts["p"] / parts["q"]


def rational_reference_grads(x, numerator, denominator, grad_output, version="A", basis="power",
                             channel_dim=1):
    """(y, grad_x, grad_numerator, grad_denominator), all float64, from autograd on the reference.

    Inputs may have any floating dtype and device; they are copied to float64 CPU leaves.
    """
    xs = x.detach().cpu().to(torch.float64).requires_grad_(True)
    a = numerator.detach().cpu().to(torch.float64).requires_grad_(True)
    b = denominator.detach().cpu().to(torch.float64).requires_grad_(True)
    g = grad_output.detach().cpu().to(torch.float64)
    y = rational_reference(xs, a, b, version, basis, channel_dim)
    gx, ga, gb = torch.autograd.grad(y, (xs, a, b), g, allow_unused=True)
    return y.detach(), gx, ga, gb


# ------------------------------------------------------------------------------------------------
# Error scales. A kernel that evaluates the formula in floating point with unit roundoff eps makes
# errors of about eps times the magnitudes of the terms it adds, not eps times the (possibly
# cancelled) result. These functions give those magnitudes, so the tests can use tolerances of the
# form  out_rtol * |ref| + math_rtol * scale  that stay tight where nothing cancels and do not fail
# spuriously where something does.


def _basis_magnitude(t: torch.Tensor, basis: str) -> torch.Tensor:
    """Magnitude against which the rounding error of each computed basis value is measured.

    Power basis: |x^k| itself (products carry a relative error). Three-term recurrences with
    cancellation: the running max of |f_i| (i <= k), as the error near a root of f_k is set by
    the neighbours that were combined to produce it.
    """
    if basis == "power":
        return t.abs()
    return torch.cummax(t.abs(), dim=-1).values


def _group_sum(per_element: torch.Tensor, coef: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Sum per-element quantities (x.shape + (K,)) over the elements of each coefficient group."""
    k = per_element.shape[-1]
    if coef.dim() == 1:
        return per_element.reshape(-1, k).sum(0)
    groups = coef.shape[0]
    if groups == 1:
        return per_element.reshape(-1, k).sum(0).reshape(1, k)
    ndim = per_element.dim() - 1
    cdim = channel_dim % ndim
    moved = per_element.movedim(cdim, 0)
    channels = moved.shape[0]
    return moved.reshape(groups, channels // groups, -1, k).sum(dim=(1, 2))


@torch.no_grad()
def error_scales(x, numerator, denominator, grad_output=None, version="A", basis="power",
                 channel_dim=1):
    """Magnitudes that bound rounding errors of y, grad_x, grad_numerator, grad_denominator.

    Returns a dict with float64 CPU tensors 'y' (x.shape), and when grad_output is given,
    'grad_x' (x.shape), 'grad_numerator' / 'grad_denominator' (the coefficients' shapes).
    Basis magnitudes come from _basis_magnitude.
    """
    x = x.detach().cpu()
    numerator = numerator.detach().cpu()
    denominator = denominator.detach().cpu()
    parts = _parts(x, numerator, denominator, version, basis, channel_dim)
    m, n, k0 = parts["m"], parts["n"], parts["k0"]
    xs = parts["x"]
    f_mag = _basis_magnitude(parts["f"], basis)
    df_mag = _basis_magnitude(basis_derivatives(xs, max(m, n), basis), basis)
    a_abs = parts["a_e"].abs()
    b_abs = parts["b_e"].abs()
    y = parts["p"] / parts["q"]
    q = parts["q"].abs()  # only version N can make Q negative (a pole between data points)
    p_abs = (a_abs * f_mag[..., : m + 1]).sum(-1)
    dp_abs = (a_abs * df_mag[..., : m + 1]).sum(-1)
    d_abs = (b_abs * f_mag[..., k0 : n + 1]).sum(-1)
    dd_abs = (b_abs * df_mag[..., k0 : n + 1]).sum(-1)
    y_scale = p_abs / q + y.abs() * d_abs / q
    out = {"y": y_scale}
    if grad_output is None:
        return out
    g = grad_output.detach().cpu().to(torch.float64).abs()
    gx_scale = (dp_abs / q + dp_abs * d_abs / (q * q) + y_scale * dd_abs / q
                + y.abs() * dd_abs / q + y.abs() * dd_abs * d_abs / (q * q))
    out["grad_x"] = g * gx_scale
    w_num = (g / q * (1.0 + d_abs / q)).unsqueeze(-1) * f_mag[..., : m + 1]
    w_den = (g / q * (y_scale + y.abs() * d_abs / q)).unsqueeze(-1) * f_mag[..., k0 : n + 1]
    out["grad_numerator"] = _group_sum(w_num.expand(*x.shape, m + 1), numerator, channel_dim)
    nb = denominator.shape[-1]
    out["grad_denominator"] = _group_sum(w_den.expand(*x.shape, nb), denominator, channel_dim)
    return out


@torch.no_grad()
def kink_margin(x, numerator, denominator, version="A", basis="power", channel_dim=1):
    """Relative distance of each element from a point where y is not differentiable (float64).

    A: min_k |f_k(x)| / magnitude_k over the denominator terms (for the power basis: |x|);
    B, C: |S| / sum |b_k| magnitude_k; N: +inf (no abs). Magnitudes from _basis_magnitude.
    Elements with a small margin make finite differences and sign choices of a float32 kernel
    unreliable, so tests move x away from them.
    """
    x = x.detach().cpu()
    parts = _parts(x, numerator.detach().cpu(), denominator.detach().cpu(), version, basis, channel_dim)
    k0, n = parts["k0"], parts["n"]
    f = parts["f"]
    if version == "N":
        return torch.full(x.shape, float("inf"), dtype=torch.float64)
    if version == "A":
        if basis == "power":  # x^k is computed to full relative accuracy; the kink is x = 0
            return x.to(torch.float64).abs()
        f_mag = _basis_magnitude(f, basis)
        rel = f[..., k0 : n + 1].abs() / f_mag[..., k0 : n + 1]
        return rel.amin(-1)
    f_mag = _basis_magnitude(f, basis)
    d_abs = (parts["b_e"].abs() * f_mag[..., k0 : n + 1]).sum(-1)
    return parts["s"].abs() / d_abs
