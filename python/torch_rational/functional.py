"""Functional interface of the rational activations (thin wrappers over ``torch.ops.torch_rational``)."""

from __future__ import annotations

from typing import Optional

import torch

from ._ops import ops

__all__ = ["rational", "pwlu", "noise_seed", "VERSIONS", "BASES"]

VERSIONS = ("A", "B", "C", "N")
BASES = ("power", "chebyshev_t", "chebyshev_u", "hermite", "hermite_e", "laguerre", "legendre")


def noise_seed(generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A fresh RPAU noise seed (int64 CPU tensor with one element) from torch's generator, so
    ``torch.manual_seed`` makes the noise reproducible."""
    return torch.randint(0, 2**62, (1,), dtype=torch.int64, generator=generator)


def rational(
    x: torch.Tensor,
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    *,
    version: str = "A",
    basis: str = "power",
    channel_dim: int = 1,
    noise: float = 0.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    r"""Rational activation :math:`y = P(x) / Q(x)` applied elementwise.

    :math:`P(x) = \sum_{j=0}^{m} a_j f_j(x)`; the denominator depends on ``version``:

    - ``"A"`` (safe PAU): :math:`Q = 1 + \sum_{k=1}^{n} |b_k| |f_k(x)|`
    - ``"B"``: :math:`Q = 1 + |\sum_{k=1}^{n} b_k f_k(x)|`
    - ``"C"``: :math:`Q = 0.1 + |\sum_{k=0}^{n} b_k f_k(x)|` (``n + 1`` coefficients)
    - ``"N"`` (unsafe, may have poles): :math:`Q = 1 + \sum_{k=1}^{n} b_k f_k(x)`

    Args:
        x: input of any shape, float16 / bfloat16 / float32 / float64, CPU or CUDA.
        numerator: ``(m+1,)`` or ``(G, m+1)`` coefficients :math:`a_j`.
        denominator: ``(n,)`` or ``(G, n)`` coefficients :math:`b_k` (``n + 1`` for version C).
        version: ``"A"``, ``"B"``, ``"C"`` or ``"N"``.
        basis: ``"power"``, ``"chebyshev_t"``, ``"chebyshev_u"``, ``"hermite"``, ``"hermite_e"``,
            ``"laguerre"`` or ``"legendre"``.
        channel_dim: with G > 1 groups, channel ``c`` of ``x`` along this dimension uses group
            ``c // (C / G)``. Ignored for G = 1.
        noise: RPAU noise: every coefficient of every element is multiplied by ``1 + u``,
            ``u ~ U[-noise, noise]``. ``0`` gives plain PAU.
        generator: generator for the noise seed (default: torch's default generator).
    """
    seed = noise_seed(generator) if noise > 0 else None
    return ops.rational(x, numerator, denominator, version, basis, channel_dim, float(noise), seed)


def pwlu(
    x: torch.Tensor,
    heights: torch.Tensor,
    bounds: torch.Tensor,
    slopes: torch.Tensor,
    *,
    channel_dim: int = 1,
) -> torch.Tensor:
    r"""Piecewise linear unit: ``N`` uniform pieces on ``[L, R]``, linear outside.

    With :math:`d = (R - L)/N`, heights :math:`Y_0..Y_N` and outer slopes :math:`K_L, K_R`:
    :math:`y = Y_0 + (x - L) K_L` for :math:`x < L`, :math:`y = Y_N + (x - R) K_R` for
    :math:`x \ge R`, else with :math:`u = (x - L)/d`, :math:`i = \min(\lfloor u \rfloor, N - 1)`,
    :math:`t = u - i`: :math:`y = Y_i + t (Y_{i+1} - Y_i)`.

    Args:
        x: input of any shape, float16 / bfloat16 / float32 / float64, CPU or CUDA.
        heights: ``(N+1,)`` or ``(G, N+1)``.
        bounds: ``(2,)`` or ``(G, 2)``: ``(L, R)``, finite with ``L < R`` (checked on the host,
            which synchronises a CUDA stream).
        slopes: ``(2,)`` or ``(G, 2)``: ``(K_L, K_R)``.
        channel_dim: with G > 1 groups, channel ``c`` of ``x`` along this dimension uses group
            ``c // (C / G)``. Ignored for G = 1.

    Differentiable in ``x``, ``heights``, ``bounds`` and ``slopes``.
    """
    return ops.pwlu(x, heights, bounds, slopes, channel_dim)


__all__ += ["era"]


def era(
    x: torch.Tensor,
    linear: torch.Tensor,
    fractions: torch.Tensor,
    *,
    eps: float = 1e-6,
    channel_dim: int = 1,
    normalize: str | None = None,
) -> torch.Tensor:
    r"""ERA, Enhanced Rational Activation, applied elementwise:

    .. math:: y = a x + b + \sum_{i=1}^{n} \frac{c_i x + d_i}{(x - e_i)^2 + f_i^2 + \epsilon}

    The denominator is at least ``eps``, so there is no pole for any parameters (``eps > 0``).

    Args:
        x: input of any shape, float16 / bfloat16 / float32 / float64, CPU or CUDA.
        linear: ``(2,)`` or ``(G, 2)``: ``(a, b)`` per group.
        fractions: ``(n, 4)`` or ``(G, n, 4)``: rows ``(c_i, d_i, e_i, f_i)``.
        eps: ``>= 0``, added to every denominator.
        channel_dim: with G > 1 groups, channel ``c`` of ``x`` along this dimension uses group
            ``c // (C / G)`` (``C`` must be divisible by ``G``). Ignored for G = 1 unless
            ``normalize`` is given.
        normalize: ``None``, ``"layer"`` or ``"instance"``: ERA of ``x`` normalised first (no
            affine, eps 1e-5; ``"layer"`` over ``channel_dim``, ``"instance"`` over the spatial
            dims of ``(N, C, *spatial)``), as :class:`torch_rational.ERA` does. On CPU float32
            with one group and up to 4 fractions, normalisation and ERA are one fused kernel.
    """
    if normalize is None:
        return ops.era(x, linear, fractions, float(eps), channel_dim)
    return ops.normalized_era(x, linear, fractions, float(eps), channel_dim, normalize)
