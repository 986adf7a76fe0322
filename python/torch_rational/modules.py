"""``nn.Module`` drop-in replacements for fixed activations (``nn.ReLU`` -> ``PAU``)."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from . import functional as F
from ._ops import ops
from .fit import (
    InitFunction,
    activation_function,
    check_fit_range,
    era_init_parameters,
    fit_init,
    init_coefficients,
    init_label,
    sample_function,
)

__all__ = ["Rational", "PAU", "RPAU", "OPAU", "HP1", "HP2", "ERA", "ERA_NORMALIZATIONS", "PWLU"]

ERA_NORMALIZATIONS = (None, "instance", "layer")


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


def _check_groups(num_groups, channel_dim, who: str) -> None:
    """The (num_groups, channel_dim) options every activation module takes; errors name ``who``."""
    if not _is_int(num_groups) or num_groups < 1:
        raise ValueError(f"{who}: num_groups must be a positive integer, got {num_groups!r}")
    if not isinstance(channel_dim, int):
        raise TypeError(f"{who}: channel_dim must be an int, got {channel_dim!r}")


def _checked_float(who: str, name: str, value, valid, requirement: str) -> float:
    """``float(value)`` if ``valid`` of it, else a ValueError naming the option and the requirement."""
    value = float(value)
    if not valid(value):
        raise ValueError(f"{who}: {name} must be {requirement}, got {value!r}")
    return value


def _is_int(value) -> bool:
    """An int proper: bool is an int subclass, but ``True`` as a count is a mistake."""
    return isinstance(value, int) and not isinstance(value, bool)


def _store_options(module: nn.Module, **options) -> None:
    """Keeps a module's checked constructor options as attributes of the same names (what
    ``forward``, ``reset_parameters`` and ``extra_repr`` read)."""
    for name, value in options.items():
        setattr(module, name, value)


def _factory(device, dtype) -> dict:
    """Factory arguments of a module's parameters: torch's default dtype unless one is given."""
    return {"device": device, "dtype": dtype if dtype is not None else torch.get_default_dtype()}


class _FittedInit:
    """``init`` of a module whose parameters start as a fit of a function (Rational, ERA): a name or
    any callable, fitted once; the fit is kept in non-persistent buffers (out of ``state_dict``,
    moved by ``.to()``), the callable is not, so deepcopy and pickle work for lambdas too. ``init``
    reads as the function's name (a callable's ``__name__``). ``"random"`` keeps no fit:
    ``reset_parameters()`` draws afresh."""

    #: Buffers holding the fit, in the order ``_fit_init`` returns it.
    _init_buffer_names: tuple[str, ...]

    def _fit_init(self, function: InitFunction) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _fitted_init(self, function: InitFunction) -> tuple[torch.Tensor | None, ...]:
        if isinstance(function, str) and function == "random":
            return (None,) * len(self._init_buffer_names)
        return self._fit_init(function)

    def _register_init(self, function: InitFunction) -> None:
        """At construction: fits ``function`` and registers the fit as the init buffers."""
        for name, fitted in zip(self._init_buffer_names, self._fitted_init(function)):
            self.register_buffer(name, fitted, persistent=False)
        self._init_name = init_label(function)

    @property
    def init(self) -> str:
        """Name of the init function (a callable's ``__name__``)."""
        return self._init_name

    @init.setter
    def init(self, name: str) -> None:
        """Assigning a name re-targets ``reset_parameters()`` to that function's fit (the
        parameters themselves change only at the next reset)."""
        if not isinstance(name, str):
            raise TypeError(f"torch_rational: init can be reassigned a function name only, got {name!r}")
        device = next(self.parameters()).device
        fitted = self._fitted_init(name)
        self._init_name = name
        for buffer, value in zip(self._init_buffer_names, fitted):
            setattr(self, buffer, None if value is None else value.to(device))


class Rational(_FittedInit, nn.Module):
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
        _check_groups(num_groups, channel_dim, "torch_rational")
        noise = _checked_float("torch_rational", "noise", noise, lambda v: v >= 0.0, ">= 0")
        if not isinstance(init, str) and not callable(init):
            raise TypeError(f"torch_rational: init must be a function name or a callable, got {init!r}")
        for flag, value in (("trainable", trainable), ("train_numerator", train_numerator),
                            ("train_denominator", train_denominator), ("shared_numerator", shared_numerator)):
            if not isinstance(value, bool):
                raise TypeError(f"torch_rational: {flag} must be a bool, got {value!r}")
        if init == "random" and fit_range is not None:
            raise ValueError("torch_rational: fit_range needs a function to fit; init is 'random'")
        self.fit_range = None if fit_range is None else check_fit_range(fit_range)
        _store_options(self, version=version, basis=basis, num_groups=num_groups, channel_dim=channel_dim,
                       shared_numerator=shared_numerator, noise=noise, trainable=trainable,
                       train_numerator=train_numerator, train_denominator=train_denominator)
        m, n = self.degrees
        nb = n + 1 if version == "C" else n
        factory = _factory(device, dtype)
        num_shape = (m + 1,) if shared_numerator else (num_groups, m + 1)
        self.numerator = nn.Parameter(torch.empty(num_shape, **factory),
                                      requires_grad=trainable and train_numerator)
        self.denominator = nn.Parameter(torch.empty(num_groups, nb, **factory),
                                        requires_grad=trainable and train_denominator)
        self._register_init(init)  # what reset_parameters() restores
        self.reset_parameters()

    _init_buffer_names = ("init_numerator", "init_denominator")

    def _fit_init(self, function: InitFunction) -> tuple[torch.Tensor, torch.Tensor]:
        return fit_init(function, self.degrees, version=self.version, basis=self.basis, fit_range=self.fit_range)

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


class ERA(_FittedInit, nn.Module):
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
        init: function fitted at initialisation on [-3, 3]: a name, ``"swish"`` (default), ``"relu"``,
            ``"leaky_relu"`` (slope 0.01), ``"leaky_relu_0.3"``, ``"gelu"``, ``"tanh"``,
            ``"identity"``, ... (shipped for n = 1, 2; others fitted on the fly) or ``"random"``
            (a random stable start, drawn afresh per group at every reset), or any callable
            ``Tensor -> Tensor`` (e.g. ``torch.nn.Hardswish()``; given float64 points), fitted at
            construction as :func:`torch_rational.fit_era` does. The fit is stored (non-persistent
            buffers ``init_linear``, ``init_fractions``), not the callable: ``reset_parameters()``
            restores it, and deepcopy and pickle work for lambdas too.
        num_groups: ``G`` parameter groups along ``channel_dim`` (1: one activation per layer).
        channel_dim: dimension holding the channels (1 for NCHW, -1 for (batch, tokens, features)).
        normalize: ``None``, ``"instance"`` (over the spatial dims per sample and channel) or
            ``"layer"`` (over ``channel_dim`` per position).
        eps: added to every denominator (>= 0).
        trainable: ``False`` freezes the parameters (``requires_grad=False``, as for :class:`Rational`).

    Parameters ``linear`` ``(G, 2)`` = (a, b) and ``fractions`` ``(G, n, 4)`` = rows (c, d, e, f).
    """

    def __init__(self, num_fractions: int = 1, *, init: InitFunction = "swish", num_groups: int = 1,
                 channel_dim: int = 1, normalize: str | None = None, eps: float = 1e-6, trainable: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        if not _is_int(num_fractions) or not 1 <= num_fractions <= 32:
            raise ValueError(f"torch_rational.ERA: num_fractions must be an integer in [1, 32], got {num_fractions!r}")
        _check_groups(num_groups, channel_dim, "torch_rational.ERA")
        if normalize not in ERA_NORMALIZATIONS:
            raise ValueError(f"torch_rational.ERA: normalize must be one of {ERA_NORMALIZATIONS}, got {normalize!r}")
        eps = _checked_float("torch_rational.ERA", "eps", eps, lambda v: 0.0 <= v < float("inf"), "finite and >= 0")
        if not isinstance(init, str) and not callable(init):
            raise TypeError(f"torch_rational.ERA: init must be a function name or a callable, got {init!r}")
        if not isinstance(trainable, bool):
            raise TypeError(f"torch_rational.ERA: trainable must be a bool, got {trainable!r}")
        _store_options(self, num_fractions=num_fractions, num_groups=num_groups, channel_dim=channel_dim,
                       normalize=normalize, eps=eps, trainable=trainable)
        factory = _factory(device, dtype)
        self.linear = nn.Parameter(torch.empty(num_groups, 2, **factory), requires_grad=trainable)
        self.fractions = nn.Parameter(torch.empty(num_groups, num_fractions, 4, **factory), requires_grad=trainable)
        self._register_init(init)  # what reset_parameters() restores
        self.reset_parameters()

    _init_buffer_names = ("init_linear", "init_fractions")

    def _fit_init(self, function: InitFunction) -> tuple[torch.Tensor, torch.Tensor]:
        return era_init_parameters(function, self.num_fractions)

    def __setstate__(self, state):
        # Pickled before init could be a callable: a name in a plain attribute, no init buffers.
        name = state.pop("init") if "_init_name" not in state else None
        super().__setstate__(state)
        if name is not None:
            self._register_init(name)
            for buffer in self._init_buffer_names:
                if getattr(self, buffer) is not None:
                    setattr(self, buffer, getattr(self, buffer).to(self.linear.device))

    def reset_parameters(self) -> None:
        """Sets the parameters to the fit of ``init`` (every group the same; ``"random"``: one
        draw per group)."""
        with torch.no_grad():
            if self.init_linear is None:
                for g in range(self.num_groups):
                    lin, fr = era_init_parameters("random", self.num_fractions)
                    self.linear[g].copy_(lin)
                    self.fractions[g].copy_(fr)
            else:
                self.linear.copy_(self.init_linear.expand_as(self.linear))
                self.fractions.copy_(self.init_fractions.expand_as(self.fractions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.era(x, self.linear, self.fractions, eps=self.eps, channel_dim=self.channel_dim,
                     normalize=self.normalize)

    def extra_repr(self) -> str:
        s = f"num_fractions={self.num_fractions}, init={self.init!r}, num_groups={self.num_groups}"
        if self.num_groups > 1 or self.normalize is not None:
            s += f", channel_dim={self.channel_dim}"
        if self.normalize is not None:
            s += f", normalize={self.normalize!r}"
        if self.eps != 1e-6:
            s += f", eps={self.eps}"
        if not self.trainable:
            s += ", trainable=False"
        return s


class PWLU(nn.Module):
    r"""Learnable piecewise linear unit (see :func:`torch_rational.functional.pwlu`).

    ``N = num_pieces`` uniform pieces on ``[L, R]`` with heights ``Y_0..Y_N`` and outer slopes
    ``K_L, K_R``, per group.

    Realignment: for the first ``realign_steps`` forward calls in training mode the module is
    the ``init`` function (gradients flow to ``x`` through it) while it collects the running mean
    and standard deviation of its input per group (the first call sets them, later calls
    ``stat = momentum * stat + (1 - momentum) * batch_stat``). After the last of those calls (or on
    an explicit :meth:`realign`) it sets ``L = mean - 3 std``, ``R = mean + 3 std``, the heights to
    ``init`` at the breakpoints and ``K_L``, ``K_R`` to the derivative of ``init`` at ``L`` and
    ``R`` (central difference), and from then on evaluates and trains the PWLU. Before realignment,
    in eval mode (or with ``realign_steps=0``) the current parameters are used: ``init`` sampled on
    ``[-bound, bound]``.

    Args:
        num_pieces: ``N >= 1``.
        init: function to start from: a name, ``"relu"``, ``"leaky_relu"``, ``"swish"``/``"silu"``,
            ``"gelu"``, ``"tanh"``, ``"sigmoid"``, ``"identity"`` or any other name
            :func:`torch_rational.activation_function` knows, or any callable ``Tensor -> Tensor``
            (e.g. ``torch.nn.Hardswish()`` or a lambda). The module keeps the callable: it is
            evaluated at the breakpoints (float64 CPU points) at construction and at the realignment,
            and is the forward (on ``x`` itself, gradients included) during the statistics phase. It
            is not a submodule (``state_dict``, ``.to()`` and ``repr`` do not include it), and a
            deepcopy or pickle of the module copies or pickles it with the module (so a module with
            a lambda init deep-copies but does not pickle). ``init`` reads as the function's name;
            assigning a name or a callable re-targets :meth:`reset_parameters` and :meth:`realign`.
        num_groups: ``G`` parameter groups along ``channel_dim`` (contiguous blocks of channels).
        channel_dim: dimension holding the channels.
        realign_steps: number of statistics-collecting training calls before the realignment.
        bound: half-range ``[-bound, bound]`` of the parameters before realignment.
        momentum: running statistics momentum (0.9 as in the paper).

    Parameters ``heights`` ``(G, N+1)``, ``bounds`` ``(G, 2)``, ``slopes`` ``(G, 2)``; buffers
    ``num_realign_calls`` (int64), ``running_mean`` ``(G,)``, ``running_std`` ``(G,)``, ``aligned``
    (bool): all in ``state_dict``, so a checkpoint taken mid-realignment resumes it.
    """

    def __init__(
        self,
        num_pieces: int = 16,
        *,
        init: InitFunction = "relu",
        num_groups: int = 1,
        channel_dim: int = 1,
        realign_steps: int = 100,
        bound: float = 3.0,
        momentum: float = 0.9,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not _is_int(num_pieces) or num_pieces < 1:
            raise ValueError(f"torch_rational: num_pieces must be a positive integer, got {num_pieces!r}")
        _check_groups(num_groups, channel_dim, "torch_rational")
        if not isinstance(realign_steps, int) or realign_steps < 0:
            raise ValueError(f"torch_rational: realign_steps must be an integer >= 0, got {realign_steps!r}")
        bound = _checked_float("torch_rational", "bound", bound, lambda v: 0.0 < v < float("inf"), "finite and > 0")
        momentum = _checked_float("torch_rational", "momentum", momentum, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
        self.init = init
        _store_options(self, num_pieces=num_pieces, num_groups=num_groups, channel_dim=channel_dim,
                       realign_steps=realign_steps, bound=bound, momentum=momentum)
        factory = _factory(device, dtype)
        g = num_groups
        self.heights = nn.Parameter(torch.empty(g, num_pieces + 1, **factory))
        self.bounds = nn.Parameter(torch.empty(g, 2, **factory))
        self.slopes = nn.Parameter(torch.empty(g, 2, **factory))
        self.register_buffer("num_realign_calls", torch.zeros((), dtype=torch.int64, device=device))
        self.register_buffer("running_mean", torch.zeros(g, **factory))
        self.register_buffer("running_std", torch.full((g,), bound / 3.0, **factory))
        self.register_buffer("aligned", torch.zeros((), dtype=torch.bool, device=device))
        self._collecting = None  # cached "still collecting statistics" (None: read the buffers)
        self.reset_parameters()

    # ------------------------------------------------------------------------------------------
    @property
    def init(self) -> str:
        """Name of the init function (a callable's ``__name__``)."""
        return init_label(self._init_function)

    @init.setter
    def init(self, function: InitFunction) -> None:
        if isinstance(function, str):
            activation_function(function, torch.zeros(1, dtype=torch.float64))  # raises, naming it, if unknown
        elif not callable(function):
            raise TypeError(f"torch_rational.PWLU: init must be a function name or a callable, got {function!r}")
        object.__setattr__(self, "_init_function", function)  # past nn.Module.__setattr__, see there

    def __setattr__(self, name: str, value) -> None:
        # nn.Module.__setattr__ would register an nn.Module init (nn.Hardswish()) as a submodule
        # (joining state_dict, repr and .to()) instead of calling the property.
        if name == "init":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _init_at(self, x: torch.Tensor) -> torch.Tensor:
        """``init`` on ``x``, names and callables alike, checked (errors name ``init``)."""
        return sample_function(self._init_function, x, "torch_rational.PWLU", "init")

    @torch.no_grad()
    def _set_parameters_from_init(self, left: torch.Tensor, right: torch.Tensor) -> None:
        """Heights, bounds and slopes from ``init`` on ``[left_g, right_g]``: the C++ ops give the
        points to evaluate ``init`` at and turn its values there into the parameters (one
        implementation for both module APIs; a Python callable cannot enter an op)."""
        points = ops.pwlu_init_points(left, right, self.num_pieces)
        heights_bounds_slopes = ops.pwlu_parameters_from_values(points, self._init_at(points))
        for param, value in zip((self.heights, self.bounds, self.slopes), heights_bounds_slopes):
            param.copy_(value)

    def reset_parameters(self) -> None:
        """Initial state: ``init`` on ``[-bound, bound]``, statistics and realignment reset."""
        g = self.num_groups
        self._set_parameters_from_init(torch.full((g,), -self.bound, dtype=torch.float64),
                                       torch.full((g,), self.bound, dtype=torch.float64))
        with torch.no_grad():
            self.num_realign_calls.zero_()
            self.running_mean.zero_()
            self.running_std.fill_(self.bound / 3.0)
            self.aligned.fill_(False)
        self._collecting = None

    @torch.no_grad()
    def realign(self) -> None:
        """Sets ``bounds = running_mean -/+ 3 running_std`` and heights / slopes from ``init``;
        ends the statistics phase."""
        self._set_parameters_from_init(*ops.pwlu_realigned_bounds(self.running_mean, self.running_std))
        self.aligned.fill_(True)
        self._collecting = False

    # ------------------------------------------------------------------------------------------
    def _is_collecting(self) -> bool:
        if self._collecting is None:
            # One host read of the buffers, then cached until the state changes.
            self._collecting = (not bool(self.aligned)) and int(self.num_realign_calls) < self.realign_steps
        return self._collecting

    @torch.no_grad()
    def _update_statistics(self, x: torch.Tensor) -> None:
        ops.pwlu_update_statistics_(self.running_mean, self.running_std, self.num_realign_calls, x,
                                    self.channel_dim, self.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self._is_collecting():
            if x.numel() == 0:  # no statistics in an empty batch: it does not count as a step
                return self._init_at(x)
            self._update_statistics(x)
            if int(self.num_realign_calls) >= self.realign_steps:
                self.realign()
            return self._init_at(x)
        return F.pwlu(x, self.heights, self.bounds, self.slopes, channel_dim=self.channel_dim)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._collecting = None

    def __setstate__(self, state):
        if "_init_function" not in state:  # pickled before init could be a callable: a plain attribute
            state["_init_function"] = state.pop("init")
        super().__setstate__(state)
        self._collecting = None

    def extra_repr(self) -> str:
        s = f"num_pieces={self.num_pieces}, init={self.init!r}, num_groups={self.num_groups}"
        if self.num_groups > 1:
            s += f", channel_dim={self.channel_dim}"
        s += f", realign_steps={self.realign_steps}"
        if self.bound != 3.0:
            s += f", bound={self.bound}"
        return s
