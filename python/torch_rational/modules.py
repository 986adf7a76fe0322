"""``nn.Module`` drop-in replacements for fixed activations (``nn.ReLU`` -> ``PAU``)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from . import functional as F
from .fit import InitFunction, check_fit_range, fit_init, init_coefficients

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
        init: function approximated at initialisation: a name (``"leaky_relu"``, ``"relu"``,
            ``"swish"``, ``"gelu"``, ``"tanh"``, ``"leaky_relu_0.2"``, ... or ``"random"``; shipped fits
            from ``configs/rational_init.json``, other combinations are fitted on the fly) or any
            callable ``Tensor -> Tensor`` (e.g. ``torch.nn.Hardswish()``), fitted on ``fit_range``.
            The fitted coefficients are stored (not the callable), so ``reset_parameters()``,
            deepcopy and pickle work for lambdas too.
        fit_range: ``(lo, hi)`` of the init fit (default: the table's ``(-3, 3)``, widened for
            ``relu6`` and ``hardswish``; see :func:`torch_rational.fit.fit_init`). Warns when the fit
            departs from the target just outside it.
        num_groups: ``G`` coefficient groups along ``channel_dim`` (1: one activation per layer,
            ``C``: one per channel).
        channel_dim: dimension holding the channels (1 for NCHW, -1 for (batch, tokens, features)).
        shared_numerator: KAT's group-rational layer (Kolmogorov-Arnold Transformer): one numerator
            ``(m+1,)`` shared by the ``G`` groups, one denominator per group; the numerator is
            expanded to ``(G, m+1)`` for the op, so its gradient is the sum over groups.
        noise: RPAU noise level, applied in training mode only.
        trainable: ``False`` freezes the coefficients (``requires_grad=False``, as rational_activations
            does; they stay parameters, so ``state_dict`` keys do not change).
        train_numerator, train_denominator: freeze one of the two.

    Parameters ``numerator`` ``(G, m+1)`` (``(m+1,)`` with ``shared_numerator``) and
    ``denominator`` ``(G, n)`` (``(G, n+1)`` for C).
    """

    def __init__(
        self,
        degrees: Sequence[int] = (5, 4),
        *,
        version: str = "A",
        basis: str = "power",
        init: InitFunction = "leaky_relu",
        fit_range: Optional[Tuple[float, float]] = None,
        num_groups: int = 1,
        channel_dim: int = 1,
        shared_numerator: bool = False,
        noise: float = 0.0,
        trainable: bool = True,
        train_numerator: bool = True,
        train_denominator: bool = True,
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
        if not isinstance(init, str) and not callable(init):
            raise TypeError(f"torch_rational: init must be a function name or a callable, got {init!r}")
        for flag, value in (("trainable", trainable), ("train_numerator", train_numerator),
                            ("train_denominator", train_denominator), ("shared_numerator", shared_numerator)):
            if not isinstance(value, bool):
                raise TypeError(f"torch_rational: {flag} must be a bool, got {value!r}")
        if init == "random" and fit_range is not None:
            raise ValueError("torch_rational: fit_range needs a function to fit; init is 'random'")
        self.version = version
        self.basis = basis
        # A callable is recorded by name only (for extra_repr); its fit is in the init buffers.
        self.init = init if isinstance(init, str) else getattr(init, "__name__", None) or type(init).__name__
        self.fit_range = None if fit_range is None else check_fit_range(fit_range)
        self.num_groups = num_groups
        self.channel_dim = channel_dim
        self.shared_numerator = shared_numerator
        self.noise = noise
        self.trainable = trainable
        self.train_numerator = train_numerator
        self.train_denominator = train_denominator
        m, n = self.degrees
        nb = n + 1 if version == "C" else n
        factory = {"device": device, "dtype": dtype if dtype is not None else torch.get_default_dtype()}
        num_shape = (m + 1,) if shared_numerator else (num_groups, m + 1)
        self.numerator = nn.Parameter(torch.empty(num_shape, **factory),
                                      requires_grad=trainable and train_numerator)
        self.denominator = nn.Parameter(torch.empty(num_groups, nb, **factory),
                                        requires_grad=trainable and train_denominator)
        # What reset_parameters() restores; non-persistent, so state_dict keys stay those of the
        # parameters. "random" draws afresh at every reset instead.
        a = b = None
        if init != "random":
            a, b = fit_init(init, self.degrees, version=version, basis=basis, fit_range=self.fit_range)
        self.register_buffer("init_numerator", a, persistent=False)
        self.register_buffer("init_denominator", b, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Sets the coefficients to the init fit (every group the same)."""
        if self.init_numerator is None:
            a, b = init_coefficients("random", self.degrees, version=self.version, basis=self.basis)
        else:
            a, b = self.init_numerator, self.init_denominator
        with torch.no_grad():
            self.numerator.copy_(a.expand_as(self.numerator))
            self.denominator.copy_(b.expand_as(self.denominator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        numerator = self.numerator
        if self.shared_numerator:  # a view: autograd sums the (G, m+1) gradient into (m+1,)
            numerator = numerator.expand(self.num_groups, -1)
        return F.rational(
            x,
            numerator,
            self.denominator,
            version=self.version,
            basis=self.basis,
            channel_dim=self.channel_dim,
            noise=self.noise if self.training else 0.0,
        )

    def extra_repr(self) -> str:
        s = f"degrees={self.degrees}, version={self.version!r}, basis={self.basis!r}, init={self.init!r}, "
        if self.fit_range is not None:
            s += f"fit_range={self.fit_range}, "
        s += f"num_groups={self.num_groups}"
        if self.num_groups > 1:
            s += f", channel_dim={self.channel_dim}"
        if self.shared_numerator:
            s += ", shared_numerator=True"
        if self.noise > 0:
            s += f", noise={self.noise}"
        if not self.trainable:
            s += ", trainable=False"
        else:
            s += "".join(f", {flag}=False" for flag in ("train_numerator", "train_denominator")
                         if not getattr(self, flag))
        return s


class PAU(Rational):
    """Padé Activation Unit: power basis, safe denominator (version A by default). Options as
    :class:`Rational` (``basis`` fixed)."""

    def __init__(self, degrees: Sequence[int] = (5, 4), **options) -> None:
        super().__init__(degrees, basis="power", **options)


class RPAU(Rational):
    """Randomized PAU: in training mode every coefficient is multiplied by ``1 + u``,
    ``u ~ U[-noise, noise]``, drawn per element and coefficient (reproducible with
    ``torch.manual_seed``). In eval mode it is a plain PAU."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, noise: float = 0.1, **options) -> None:
        super().__init__(degrees, basis="power", noise=noise, **options)


class OPAU(Rational):
    """Orthogonal-Padé unit: P and Q over an orthogonal polynomial basis (``chebyshev_t`` by default)."""

    def __init__(self, degrees: Sequence[int] = (5, 4), *, basis: str = "chebyshev_t", **options) -> None:
        super().__init__(degrees, basis=basis, **options)


class HP1(OPAU):
    """Safe Hermite-Padé unit HP-1: physicists' Hermite polynomials ``H_k``."""

    def __init__(self, degrees: Sequence[int] = (5, 4), **options) -> None:
        super().__init__(degrees, basis="hermite", **options)


class HP2(OPAU):
    """Safe Hermite-Padé unit HP-2: probabilists' Hermite polynomials ``He_k``."""

    def __init__(self, degrees: Sequence[int] = (5, 4), **options) -> None:
        super().__init__(degrees, basis="hermite_e", **options)
