"""Independent float64 reference of the ERA activation, written from the formula

    y = a x + b + sum_{i=1..n} (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + eps)

(docs/era.md), never from the kernels. Gradients: torch autograd through this float64
composition of elementary torch ops, plus closed-form error scales for the tolerances.
"""

from __future__ import annotations

import torch


def _per_element(x: torch.Tensor, p: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """Parameters p of shape (G, *rest) broadcast to x: group of channel c is c // (C / G)."""
    G = p.shape[0]
    rest = p.shape[1:]
    if G == 1:
        return p[0].reshape((1,) * x.dim() + rest) if x.dim() else p[0]
    cd = channel_dim % x.dim()
    C = x.shape[cd]
    group_of_channel = torch.arange(C) // (C // G)
    pc = p[group_of_channel]  # (C, *rest)
    shape = [1] * x.dim()
    shape[cd] = C
    return pc.reshape(tuple(shape) + rest)


def _grouped(linear: torch.Tensor, fractions: torch.Tensor):
    lin = linear.to(torch.float64)
    fr = fractions.to(torch.float64)
    if lin.dim() == 1:
        lin, fr = lin.unsqueeze(0), fr.unsqueeze(0)
    return lin, fr


def era_reference(x, linear, fractions, eps=1e-6, channel_dim=1):
    """float64 ERA of x (any dtype, exact values used); differentiable in all three inputs."""
    x = x.to(torch.float64)
    lin, fr = _grouped(linear, fractions)
    L = _per_element(x, lin, channel_dim)  # (..., 2)
    Fr = _per_element(x, fr, channel_dim)  # (..., n, 4)
    a, b = L[..., 0], L[..., 1]
    y = a * x + b
    for i in range(fr.shape[1]):
        c, d, e, f = (Fr[..., i, k] for k in range(4))
        y = y + (c * x + d) / ((x - e) ** 2 + f**2 + eps)
    return y


def era_reference_grads(x, linear, fractions, grad_output, eps=1e-6, channel_dim=1):
    """(y, grad_x, grad_linear, grad_fractions) in float64; parameter gradients in the parameters'
    own shapes."""
    xs = x.detach().to(torch.float64).requires_grad_(True)
    lin = linear.detach().to(torch.float64).requires_grad_(True)
    fr = fractions.detach().to(torch.float64).requires_grad_(True)
    y = era_reference(xs, lin, fr, eps, channel_dim)
    gx, gl, gf = torch.autograd.grad(y, (xs, lin, fr), grad_output.detach().to(torch.float64))
    return y.detach(), gx, gl, gf


def era_error_scales(x, linear, fractions, grad_output, eps=1e-6, channel_dim=1):
    """Per-element magnitudes that bound the rounding error of a float evaluation (the sum of the
    absolute values of every term, each fraction weighted by the conditioning of its denominator
    (x - e)^2 + f^2 + eps), and the per-parameter sums of |contributions| for the gradients."""
    x = x.detach().to(torch.float64)
    g = grad_output.detach().to(torch.float64) if grad_output is not None else torch.ones_like(x)
    lin, fr = _grouped(linear.detach(), fractions.detach())
    L = _per_element(x, lin, channel_dim)
    Fr = _per_element(x, fr, channel_dim)
    ax = x.abs()
    sy = L[..., 0].abs() * ax + L[..., 1].abs()
    sgx = L[..., 0].abs() * g.abs()
    contrib_lin = [g.abs() * ax, g.abs()]
    contrib_fr = []
    for i in range(fr.shape[1]):
        c, d, e, f = (Fr[..., i, k] for k in range(4))
        u = x - e
        D = u**2 + f**2 + eps
        cond = 1.0 + (2.0 * u.abs() * (ax + e.abs()) + f**2 + eps) / D
        r = (c.abs() * ax + d.abs()) / D
        sy = sy + r * cond
        sgx = sgx + g.abs() * (c.abs() + 2.0 * u.abs() * r) / D * cond
        contrib_fr.append([g.abs() * ax / D * cond, g.abs() / D * cond, g.abs() * 2 * u.abs() * r / D * cond,
                           g.abs() * 2 * f.abs() * r / D * cond])
    return sy, sgx, contrib_lin, contrib_fr


def parameter_grad_scales(x, linear, fractions, grad_output, eps=1e-6, channel_dim=1):
    """Sum over the elements of each group of |per-element gradient contribution|, in the shapes
    of linear and fractions."""
    _, _, cl, cf = era_error_scales(x, linear, fractions, grad_output, eps, channel_dim)
    x64 = x.detach().to(torch.float64)
    lin_shape, fr_shape = linear.shape, fractions.shape
    G = linear.shape[0] if linear.dim() == 2 else 1
    n = fractions.shape[-2]
    if G == 1:
        group = torch.zeros_like(x64, dtype=torch.long)
    else:
        cd = channel_dim % x64.dim()
        C = x64.shape[cd]
        shape = [1] * x64.dim()
        shape[cd] = C
        group = (torch.arange(C) // (C // G)).reshape(shape).expand_as(x64)
    sl = torch.zeros(G, 2, dtype=torch.float64)
    sf = torch.zeros(G, n, 4, dtype=torch.float64)
    for k in range(2):
        sl[:, k] = torch.zeros(G, dtype=torch.float64).index_add_(0, group.reshape(-1), cl[k].expand_as(x64).reshape(-1))
    for i in range(n):
        for k in range(4):
            sf[:, i, k] = torch.zeros(G, dtype=torch.float64).index_add_(
                0, group.reshape(-1), cf[i][k].expand_as(x64).reshape(-1))
    return sl.reshape(lin_shape), sf.reshape(fr_shape)
