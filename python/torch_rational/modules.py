"""``nn.Module`` drop-in replacements for fixed activations (``nn.ReLU`` -> ``PAU``)."""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from . import functional as F
from .fit import init_coefficients

__all__ = ["Rational", "PAU", "RPAU", "OPAU", "HP1", "HP2"]


def _check_degrees(degrees) -> Tuple[int, int]:
    try:
        m, n = (int(d) for d in degrees)
    except (TypeError, ValueError):
        raise ValueError(f"torch_rational: degrees must be a pair (m, n) of integers, got {degrees!r}") from None
    if any(int(d) != d for d in degrees):
        raise ValueError(f"torch_rational: degrees must be integers, got {degrees!r}")
    if not 0 <= m <= 32 or not 1 <= n <= 32:
        raise ValueError(f"torch_rational: degrees must satisfy 0 <= m <= 32 and 1 <= n <= 32, got {degrees!r}")
    return m, n


class Rational(nn.Module):
    r"""Learnable rational activation :math:`y = P(x)/Q(x)` (see :func:`torch_rational.functional.rational`).

    Args:
        degrees: ``(m, n)``, numerator and denominator degrees.
        version: denominator form, ``"A"`` (safe, default), ``"B"``, ``"C"`` or ``"N"``.
        basis: polynomial basis (``"power"``, ``"chebyshev_t"``, ``"chebyshev_u"``, ``"hermite"``,
            ``"hermite_e"``, ``"laguerre"``, ``"legendre"``).
        init: function approximated at initialisation (``"leaky_relu"``, ``"relu"``, ``"swish"``,
            ``"gelu"``, ``"tanh"``, ``"leaky_relu_0.2"``, ... or ``"random"``): shipped fits from
            ``configs/rational_init.json``, other combinations are fitted on the fly.
        num_groups: ``G`` coefficient groups along ``channel_dim`` (1: one activation per layer,
            ``C``: one per channel).
        channel_dim: dimension holding the channels (1 for NCHW, -1 for (batch, tokens, features)).
        noise: RPAU noise level, applied in training mode only.

    Parameters ``numerator`` ``(G, m+1)`` and ``denominator`` ``(G, n)`` (``(G, n+1)`` for C).
    """

    def __init__(
        self,
        degrees: Sequence[int] = (5, 4),
        *,
        version: str = "A",
        basis: str = "power",
        init: str = "leaky_relu",
        num_groups: int = 1,
        channel_dim: int = 1,
        noise: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.degrees = _check_degrees(degrees)
        if version not in F.VERSIONS:
            raise ValueError(f"torch_rational: version must be one of {F.VERSIONS}, got {version!r}")
        if basis not in F.BASES:
            raise ValueError(f"torch_rational: basis must be one of {F.BASES}, got {basis!r}")
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"torch_rational: num_groups must be a positive integer, got {num_groups!r}")
        if not isinstance(channel_dim, int):
            raise TypeError(f"torch_rational: channel_dim must be an int, got {channel_dim!r}")
        noise = float(noise)
        if not noise >= 0.0:
            raise ValueError(f"torch_rational: noise must be >= 0, got {noise!r}")
        if not isinstance(init, str):
            raise TypeError(f"torch_rational: init must be a function name, got {init!r}")
        self.version = version
        self.basis = basis
        self.init = init
        self.num_groups = num_groups
        self.channel_dim = channel_dim
        self.noise = noise
        m, n = self.degrees
        nb = n + 1 if version == "C" else n
        factory = {"device": device, "dtype": dtype if dtype is not None else torch.get_default_dtype()}
        self.numerator = nn.Parameter(torch.empty(num_groups, m + 1, **factory))
        self.denominator = nn.Parameter(torch.empty(num_groups, nb, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Sets the coefficients to the fit of ``init`` (every group the same)."""
        a, b = init_coefficients(self.init, self.degrees, version=self.version, basis=self.basis)
        with torch.no_grad():
            self.numerator.copy_(a.expand_as(self.numerator))
            self.denominator.copy_(b.expand_as(self.denominator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rational(
            x,
            self.numerator,
            self.denominator,
            version=self.version,
            basis=self.basis,
            channel_dim=self.channel_dim,
            noise=self.noise if self.training else 0.0,
        )

    def extra_repr(self) -> str:
        s = f"degrees={self.degrees}, version={self.version!r}, basis={self.basis!r}, init={self.init!r}, "
        s += f"num_groups={self.num_groups}"
        if self.num_groups > 1:
            s += f", channel_dim={self.channel_dim}"
        if self.noise > 0:
            s += f", noise={self.noise}"
        return s


class PAU(Rational):
    """Padé Activation Unit: power basis, safe denominator (version A by default)."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, version: str = "A", init: str = "leaky_relu",
                 num_groups: int = 1, channel_dim: int = 1, device=None, dtype=None) -> None:
        super().__init__(degrees, version=version, basis="power", init=init, num_groups=num_groups,
                         channel_dim=channel_dim, device=device, dtype=dtype)


class RPAU(Rational):
    """Randomized PAU: in training mode every coefficient is multiplied by ``1 + u``,
    ``u ~ U[-noise, noise]``, drawn per element and coefficient (reproducible with
    ``torch.manual_seed``). In eval mode it is a plain PAU."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, noise: float = 0.1, version: str = "A",
                 init: str = "leaky_relu", num_groups: int = 1, channel_dim: int = 1, device=None,
                 dtype=None) -> None:
        super().__init__(degrees, version=version, basis="power", init=init, num_groups=num_groups,
                         channel_dim=channel_dim, noise=noise, device=device, dtype=dtype)


class OPAU(Rational):
    """Orthogonal-Padé unit: P and Q over an orthogonal polynomial basis (``chebyshev_t`` by default)."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, basis: str = "chebyshev_t", version: str = "A",
                 init: str = "leaky_relu", num_groups: int = 1, channel_dim: int = 1, device=None,
                 dtype=None) -> None:
        super().__init__(degrees, version=version, basis=basis, init=init, num_groups=num_groups,
                         channel_dim=channel_dim, device=device, dtype=dtype)


class HP1(OPAU):
    """Safe Hermite-Padé unit HP-1: physicists' Hermite polynomials ``H_k``."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, version: str = "A", init: str = "leaky_relu",
                 num_groups: int = 1, channel_dim: int = 1, device=None, dtype=None) -> None:
        super().__init__(degrees, basis="hermite", version=version, init=init, num_groups=num_groups,
                         channel_dim=channel_dim, device=device, dtype=dtype)


class HP2(OPAU):
    """Safe Hermite-Padé unit HP-2: probabilists' Hermite polynomials ``He_k``."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, version: str = "A", init: str = "leaky_relu",
                 num_groups: int = 1, channel_dim: int = 1, device=None, dtype=None) -> None:
        super().__init__(degrees, basis="hermite_e", version=version, init=init, num_groups=num_groups,
                         channel_dim=channel_dim, device=device, dtype=dtype)
