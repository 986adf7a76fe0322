"""``PWLU``: the piecewise linear unit as an ``nn.Module``, with the statistic-based realignment of
its bounds (Zhou et al., "Learning specialized activation functions with the Piecewise Linear Unit",
ICCV 2021)."""

from __future__ import annotations

import torch
from torch import nn

from . import functional as F
from ._ops import ops
from .fit import activation_function

__all__ = ["PWLU"]


def _init_values(init: str, x: torch.Tensor) -> torch.Tensor:
    """The init function on float64 points (``torch_rational.activation_function`` names)."""
    return activation_function(init, x.to(torch.float64))


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
        init: function to start from: ``"relu"``, ``"leaky_relu"``, ``"swish"``/``"silu"``,
            ``"gelu"``, ``"tanh"``, ``"sigmoid"``, ``"identity"`` or any other name
            :func:`torch_rational.activation_function` knows.
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
        init: str = "relu",
        num_groups: int = 1,
        channel_dim: int = 1,
        realign_steps: int = 100,
        bound: float = 3.0,
        momentum: float = 0.9,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(num_pieces, bool) or not isinstance(num_pieces, int) or num_pieces < 1:
            raise ValueError(f"torch_rational: num_pieces must be a positive integer, got {num_pieces!r}")
        if not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"torch_rational: num_groups must be a positive integer, got {num_groups!r}")
        if not isinstance(channel_dim, int):
            raise TypeError(f"torch_rational: channel_dim must be an int, got {channel_dim!r}")
        if not isinstance(realign_steps, int) or realign_steps < 0:
            raise ValueError(f"torch_rational: realign_steps must be an integer >= 0, got {realign_steps!r}")
        bound = float(bound)
        if not 0.0 < bound < float("inf"):
            raise ValueError(f"torch_rational: bound must be finite and > 0, got {bound!r}")
        momentum = float(momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"torch_rational: momentum must be in [0, 1), got {momentum!r}")
        if not isinstance(init, str):
            raise TypeError(f"torch_rational: init must be a function name, got {init!r}")
        _init_values(init, torch.zeros(1))  # raises, naming the function, if unknown
        self.num_pieces = num_pieces
        self.init = init
        self.num_groups = num_groups
        self.channel_dim = channel_dim
        self.realign_steps = realign_steps
        self.bound = bound
        self.momentum = momentum
        factory = {"device": device, "dtype": dtype if dtype is not None else torch.get_default_dtype()}
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
    def _set_parameters(self, heights_bounds_slopes) -> None:
        with torch.no_grad():
            for param, value in zip((self.heights, self.bounds, self.slopes), heights_bounds_slopes):
                param.copy_(value)

    def reset_parameters(self) -> None:
        """Initial state: ``init`` on ``[-bound, bound]``, statistics and realignment reset."""
        g = self.num_groups
        self._set_parameters(ops.pwlu_init_parameters(self.init, torch.full((g,), -self.bound, dtype=torch.float64),
                                                      torch.full((g,), self.bound, dtype=torch.float64),
                                                      self.num_pieces))
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
        self._set_parameters(ops.pwlu_realigned_parameters(self.init, self.running_mean, self.running_std,
                                                           self.num_pieces))
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
                return activation_function(self.init, x)
            self._update_statistics(x)
            if int(self.num_realign_calls) >= self.realign_steps:
                self.realign()
            return activation_function(self.init, x)
        return F.pwlu(x, self.heights, self.bounds, self.slopes, channel_dim=self.channel_dim)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._collecting = None

    def __setstate__(self, state):
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
