"""ERA, Enhanced Rational Activation: the ``nn.Module``, its init tables and its fitter.

:math:`y = a x + b + \\sum_{i=1}^{n} (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + \\epsilon)`, a rational
function of degree ``2n`` written in partial fractions whose denominators are always >= eps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from . import functional as F
from ._ops import ops

__all__ = ["ERA", "ERA_NORMALIZATIONS", "EraFitResult", "era_init_parameters", "fit_era"]

ERA_NORMALIZATIONS = (None, "instance", "layer")


class EraFitResult(NamedTuple):
    linear: torch.Tensor  #: (2,) float64: (a, b)
    fractions: torch.Tensor  #: (n, 4) float64: rows (c, d, e, f)
    max_error: float  #: max |ERA(x) - f(x)| over the fitted points


def fit_era(
    function: str | Callable[[torch.Tensor], torch.Tensor],
    num_fractions: int = 1,
    *,
    range: tuple[float, float] = (-3.0, 3.0),
    num_points: int = 4001,
    eps: float = 1e-6,
) -> EraFitResult:
    """Fits ERA with ``num_fractions`` fractions to ``function`` on ``range`` (the project's own
    deterministic multi-start Levenberg-Marquardt fit towards minimax, in C++; ``|f_i| >= 0.1``).

    ``function`` is a name (see :func:`torch_rational.activation_function`) or a callable taking
    and returning a float64 tensor."""
    n = int(num_fractions)
    if not 1 <= n <= 32:
        raise ValueError(f"torch_rational.fit_era: num_fractions must be in [1, 32], got {num_fractions!r}")
    lo, hi = (float(r) for r in range)
    if not lo < hi:
        raise ValueError(f"torch_rational.fit_era: range must satisfy lo < hi, got {range!r}")
    if num_points < 4 * n + 3:
        raise ValueError(f"torch_rational.fit_era: num_points must be at least 4n+3, got {num_points}")
    x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
    if isinstance(function, str):
        y = ops.activation_function(function, x)
    elif callable(function):
        y = torch.as_tensor(function(x), dtype=torch.float64)
        if y.shape != x.shape:
            raise ValueError(f"torch_rational.fit_era: function must return a tensor of shape {tuple(x.shape)}, "
                             f"got {tuple(y.shape)}")
    else:
        raise TypeError(f"torch_rational.fit_era: function must be a name or a callable, got {function!r}")
    linear, fractions, err = ops.fit_era_data(x, y, n, float(eps))
    return EraFitResult(linear, fractions, float(err))


_warned: set = set()


def era_init_parameters(function: str, num_fractions: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``(linear (2,), fractions (n, 4))`` in float64 approximating ``function`` on [-3, 3]:
    from the shipped table (``configs/era_init.json``), else fitted on the fly (with a warning,
    once per combination). ``"random"`` draws a random stable start from torch's generator."""
    n = int(num_fractions)
    key = (function, n)
    if function != "random" and key not in _warned and not ops.has_era_init_table_entry(function, n):
        ops.activation_function(function, torch.zeros(1, dtype=torch.float64))  # unknown name: error, no warning
        _warned.add(key)
        warnings.warn(f"torch_rational: no shipped ERA init for {function} with {n} fractions; fitting it now "
                      "(once per process)", stacklevel=3)
    linear, fractions = ops.era_init(function, n)
    return linear, fractions


class ERA(nn.Module):
    r"""Enhanced Rational Activation (ERA):

    .. math:: y = a x + b + \sum_{i=1}^{n} \frac{c_i x + d_i}{(x - e_i)^2 + f_i^2 + \epsilon}

    a learnable rational function of degree ``2n`` in partial-fraction form; every denominator is
    at least ``eps``, so it has no poles. ``n = 1`` is the recommended default.

    The ERA authors recommend normalised pre-activations: instance normalisation in CNNs, layer
    normalisation in MLPs / transformers (the fractions live on the scale of the init range
    [-3, 3]). ``normalize="instance"`` or ``"layer"`` applies a parameter-free normalisation
    inside the module (off by default, so the module is a drop-in replacement for ``nn.ReLU``);
    if the network already normalises right before the activation, leave it off.

    Args:
        num_fractions: ``n`` (>= 1).
        init: function fitted at initialisation on [-3, 3]: ``"swish"`` (default), ``"relu"``,
            ``"leaky_relu"`` (slope 0.01), ``"leaky_relu_0.3"``, ``"gelu"``, ``"tanh"``,
            ``"identity"``, ... (shipped for n = 1, 2; others fitted on the fly) or ``"random"``.
        num_groups: ``G`` parameter groups along ``channel_dim`` (1: one activation per layer).
        channel_dim: dimension holding the channels (1 for NCHW, -1 for (batch, tokens, features)).
        normalize: ``None``, ``"instance"`` (over the spatial dims per sample and channel) or
            ``"layer"`` (over ``channel_dim`` per position).
        eps: added to every denominator (>= 0).

    Parameters ``linear`` ``(G, 2)`` = (a, b) and ``fractions`` ``(G, n, 4)`` = rows (c, d, e, f).
    """

    def __init__(self, num_fractions: int = 1, *, init: str = "swish", num_groups: int = 1, channel_dim: int = 1,
                 normalize: str | None = None, eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__()
        if isinstance(num_fractions, bool) or not isinstance(num_fractions, int) or not 1 <= num_fractions <= 32:
            raise ValueError(f"torch_rational.ERA: num_fractions must be an integer in [1, 32], got {num_fractions!r}")
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"torch_rational.ERA: num_groups must be a positive integer, got {num_groups!r}")
        if not isinstance(channel_dim, int):
            raise TypeError(f"torch_rational.ERA: channel_dim must be an int, got {channel_dim!r}")
        if normalize not in ERA_NORMALIZATIONS:
            raise ValueError(f"torch_rational.ERA: normalize must be one of {ERA_NORMALIZATIONS}, got {normalize!r}")
        eps = float(eps)
        if not eps >= 0.0 or eps == float("inf"):
            raise ValueError(f"torch_rational.ERA: eps must be finite and >= 0, got {eps!r}")
        if not isinstance(init, str):
            raise TypeError(f"torch_rational.ERA: init must be a function name, got {init!r}")
        self.num_fractions = num_fractions
        self.init = init
        self.num_groups = num_groups
        self.channel_dim = channel_dim
        self.normalize = normalize
        self.eps = eps
        factory = {"device": device, "dtype": dtype if dtype is not None else torch.get_default_dtype()}
        self.linear = nn.Parameter(torch.empty(num_groups, 2, **factory))
        self.fractions = nn.Parameter(torch.empty(num_groups, num_fractions, 4, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Sets the parameters to the fit of ``init`` (every group the same; ``"random"``: one
        draw per group)."""
        with torch.no_grad():
            if self.init == "random":
                for g in range(self.num_groups):
                    lin, fr = era_init_parameters("random", self.num_fractions)
                    self.linear[g].copy_(lin)
                    self.fractions[g].copy_(fr)
            else:
                lin, fr = era_init_parameters(self.init, self.num_fractions)
                self.linear.copy_(lin.expand_as(self.linear))
                self.fractions.copy_(fr.expand_as(self.fractions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ops.era_normalize(x, self.normalize or "", self.channel_dim)
        return F.era(x, self.linear, self.fractions, eps=self.eps, channel_dim=self.channel_dim)

    def extra_repr(self) -> str:
        s = f"num_fractions={self.num_fractions}, init={self.init!r}, num_groups={self.num_groups}"
        if self.num_groups > 1 or self.normalize is not None:
            s += f", channel_dim={self.channel_dim}"
        if self.normalize is not None:
            s += f", normalize={self.normalize!r}"
        if self.eps != 1e-6:
            s += f", eps={self.eps}"
        return s
