"""Least-squares fits of rational functions (the project's own fitter, in C++) and init tables."""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple, Sequence, Tuple, Union

import torch

from ._ops import ops

__all__ = ["FitResult", "fit", "init_coefficients", "fit_init", "activation_function", "EraFitResult", "fit_era",
           "era_init_parameters"]


class FitResult(NamedTuple):
    numerator: torch.Tensor  #: (m+1,) float64
    denominator: torch.Tensor  #: (n,) float64, (n+1,) for version C
    max_error: float  #: max |R(x) - f(x)| over the fitted points


def activation_function(name: str, x: torch.Tensor) -> torch.Tensor:
    """Evaluates a named function (``"relu"``, ``"leaky_relu"``, ``"leaky_relu_0.2"``, ``"swish"``,
    ``"gelu"``, ``"tanh"``, ``"sigmoid"``, ``"elu"``, ``"identity"``, ...) on ``x``."""
    return ops.activation_function(name, x)


def init_label(function) -> str:
    """What a module records as its init: the name, or a callable's ``__name__`` (its type's name
    for an object such as ``torch.nn.Hardswish()``)."""
    if isinstance(function, str):
        return function
    return getattr(function, "__name__", None) or type(function).__name__


def sample_function(function, x: torch.Tensor, caller: str, argument: str = "function") -> torch.Tensor:
    """``function`` (a name for :func:`activation_function`, or a callable taking and returning a
    tensor) on ``x``; errors name ``caller`` and the ``argument`` that holds the function. The one
    checked evaluation of every init and fit target (names and callables alike)."""
    if isinstance(function, str):
        return activation_function(function, x)
    if not callable(function):
        raise TypeError(f"{caller}: {argument} must be a function name or a callable, got {function!r}")
    try:
        y = function(x)
    except Exception as e:  # the user's function failed: say which argument it was
        raise RuntimeError(f"{caller}: {argument} {init_label(function)!r} raised {type(e).__name__}: {e}") from e
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{caller}: {argument} must return a Tensor, got {type(y).__name__}")
    if y.shape != x.shape:
        raise ValueError(f"{caller}: {argument} must return a tensor of its input's shape {tuple(x.shape)}, "
                         f"got {tuple(y.shape)}")
    return y


def fit(
    function: Union[str, Callable[[torch.Tensor], torch.Tensor]],
    degrees: Sequence[int] = (5, 4),
    *,
    version: str = "A",
    basis: str = "power",
    range: Tuple[float, float] = (-3.0, 3.0),
    num_points: int = 4001,
) -> FitResult:
    """Fits ``P/Q`` of the given family to ``function`` on ``range``.

    ``function`` is a name (see :func:`activation_function`) or a callable taking and returning a
    float64 tensor. Returns the float64 coefficients and the maximum absolute error on the grid.
    """
    m, n = (int(d) for d in degrees)
    lo, hi = (float(r) for r in range)
    if not lo < hi:
        raise ValueError(f"torch_rational.fit: range must satisfy lo < hi, got {range!r}")
    if num_points < m + n + 2:
        raise ValueError(f"torch_rational.fit: num_points must be at least m+n+2, got {num_points}")
    x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
    with torch.no_grad():
        y = sample_function(function, x, "torch_rational.fit").to(torch.float64)
    a, b, err = ops.fit_rational(x, y, m, n, version, basis)
    return FitResult(a, b, float(err))


_warned: set = set()


def init_coefficients(function: str, degrees: Sequence[int] = (5, 4), *, version: str = "A",
                      basis: str = "power") -> Tuple[torch.Tensor, torch.Tensor]:
    """Initial (numerator, denominator) in float64 approximating ``function`` on [-3, 3]: from the
    shipped table, else fitted on the fly (with a warning, once per combination)."""
    m, n = (int(d) for d in degrees)
    key = (function, m, n, version, basis)
    if function != "random" and key not in _warned and not ops.has_init_table_entry(function, m, n, version, basis):
        ops.activation_function(function, torch.zeros(1, dtype=torch.float64))  # unknown name: error, no warning
        _warned.add(key)
        warnings.warn(
            f"torch_rational: no shipped init for {function} at degrees ({m}, {n}), version {version}, "
            f"basis {basis}; fitting it now (once per process)",
            stacklevel=3,
        )
    a, b = ops.init_coefficients(function, m, n, version, basis)
    return a, b


InitFunction = Union[str, Callable[[torch.Tensor], torch.Tensor]]


def check_fit_range(fit_range) -> Tuple[float, float]:
    """``(lo, hi)`` as floats, finite with ``lo < hi``; a ValueError naming ``fit_range`` otherwise."""
    try:
        lo, hi = (float(r) for r in fit_range)
    except (TypeError, ValueError):
        raise ValueError(f"torch_rational: fit_range must be a pair (lo, hi) of numbers, got {fit_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"torch_rational: fit_range must be finite with lo < hi, got {fit_range!r}")
    return lo, hi


def fit_init(function: InitFunction, degrees: Sequence[int] = (5, 4), *, version: str = "A",
             basis: str = "power", fit_range=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Initial float64 (numerator, denominator) approximating ``function`` (a name, or any callable
    taking and returning a float64 tensor, e.g. ``torch.nn.Hardswish()``).

    A name without ``fit_range`` comes from the shipped table (see :func:`init_coefficients`); else
    the fit runs on ``fit_range`` (default: the name's own range, ``(-3, 3)`` for a callable) and
    warns when the result departs from ``function`` just outside that range (within a quarter of
    its width), where pre-activations still land.
    """
    m, n = (int(d) for d in degrees)
    if isinstance(function, str) and fit_range is None:
        return init_coefficients(function, (m, n), version=version, basis=basis)
    lo, hi = check_fit_range((-3.0, 3.0) if fit_range is None else fit_range)
    x, x_outside = ops.init_fit_points(lo, hi)
    with torch.no_grad():
        y, y_outside = (sample_function(function, t, "torch_rational", "init").to(torch.float64)
                        for t in (x, x_outside))
    what = init_label(function)
    a, b, _, warning = ops.fit_init(x, y, x_outside, y_outside, m, n, version, basis, what)
    if warning:
        warnings.warn(warning, stacklevel=3)
    return a, b


# ---- ERA (partial-fraction rational) --------------------------------------------------------------

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
    return _fit_era_samples(function, n, lo, hi, num_points, float(eps), "torch_rational.fit_era", "function")


def _fit_era_samples(function, n: int, lo: float, hi: float, num_points: int, eps: float, caller: str,
                     argument: str) -> EraFitResult:
    """:func:`fit_era` after its checks; errors name ``caller`` and ``argument``."""
    x = torch.linspace(lo, hi, num_points, dtype=torch.float64)
    with torch.no_grad():
        y = sample_function(function, x, caller, argument).to(torch.float64)
    linear, fractions, err = ops.fit_era_data(x, y, n, eps)
    return EraFitResult(linear, fractions, float(err))


_era_warned: set = set()


def era_init_parameters(function: InitFunction, num_fractions: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``(linear (2,), fractions (n, 4))`` in float64 approximating ``function`` on [-3, 3].
    A name: from the shipped table (``configs/era_init.json``), else fitted on the fly (with a
    warning, once per combination); ``"random"`` draws a random stable start from torch's
    generator. A callable (taking and returning a float64 tensor): fitted on 4001 points of
    [-3, 3], as :func:`fit_era` does (errors name ``init``)."""
    n = int(num_fractions)
    if not isinstance(function, str):
        r = _fit_era_samples(function, n, -3.0, 3.0, 4001, 1e-6, "torch_rational.ERA", "init")
        return r.linear, r.fractions
    key = (function, n)
    if function != "random" and key not in _era_warned and not ops.has_era_init_table_entry(function, n):
        ops.activation_function(function, torch.zeros(1, dtype=torch.float64))  # unknown name: error, no warning
        _era_warned.add(key)
        warnings.warn(f"torch_rational: no shipped ERA init for {function} with {n} fractions; fitting it now "
                      "(once per process)", stacklevel=3)
    linear, fractions = ops.era_init(function, n)
    return linear, fractions
