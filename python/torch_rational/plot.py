"""Seeing what was learned: plots of the learned activation curves against their init, with an
optional histogram of the inputs each activation saw.

matplotlib is an optional dependency, imported only when a plot is drawn. Recording inputs is
opt-in (:func:`record_inputs` registers forward pre-hooks; nothing runs when it is not called).
"""

from __future__ import annotations

import builtins  # builtins.range: `range` is an argument name of plot() and record_inputs()
import contextlib
import copy
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from .fit import activation_function
from .families import INIT_ATTR as _INIT_ATTR
from .families import activations_in as _activations

__all__ = ["plot", "record_inputs", "InputHistogram", "InputRecorder", "evaluate_curve"]

# Attribute names on activation modules. Plain attributes (not buffers): they never enter the
# state_dict, so checkpoints stay loadable by code that does not know about them, while
# copy.deepcopy and pickle carry them along.
_HIST_ATTR = "_torch_rational_inputs"


class InputHistogram:
    """Running histogram of the values an activation received: ``bins`` equal bins on ``range``,
    plus the counts below and above it. Accumulates on the input's device without synchronising."""

    def __init__(self, range: Tuple[float, float], bins: int) -> None:
        self.range = (float(range[0]), float(range[1]))
        self.bins = int(bins)
        self.counts: Optional[torch.Tensor] = None
        self.below: Optional[torch.Tensor] = None
        self.above: Optional[torch.Tensor] = None
        self.total = 0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach()
        if not x.is_floating_point() or x.numel() == 0:
            return
        lo, hi = self.range
        xf = x.reshape(-1).float()  # histc has no bf16/half kernels on every device
        h = torch.histc(xf, bins=self.bins, min=lo, max=hi).to(torch.float64)
        below = (xf < lo).sum()
        above = (xf > hi).sum()
        if self.counts is None:
            self.counts, self.below, self.above = h, below, above
        else:
            self.counts += h.to(self.counts.device)
            self.below += below.to(self.below.device)
            self.above += above.to(self.above.device)
        self.total += x.numel()

    def edges(self) -> torch.Tensor:
        return torch.linspace(self.range[0], self.range[1], self.bins + 1, dtype=torch.float64)

    def reset(self) -> None:
        self.counts = self.below = self.above = None
        self.total = 0


class _RecordHook:
    """Forward pre-hook feeding an InputHistogram (a class, not a closure, so models with hooks
    still deepcopy and pickle)."""

    def __init__(self, hist: InputHistogram) -> None:
        self.hist = hist

    def __call__(self, module: nn.Module, args) -> None:
        if args and isinstance(args[0], torch.Tensor):
            with torch.no_grad():
                self.hist.update(args[0])


class InputRecorder:
    """Handle returned by :func:`record_inputs`: ``histograms`` maps module names to their
    :class:`InputHistogram`; ``remove()`` (or leaving the ``with`` block) unregisters the hooks and
    keeps the histograms on the modules for :func:`plot`."""

    def __init__(self) -> None:
        self.histograms: Dict[str, InputHistogram] = {}
        self._handles = []

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> "InputRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def record_inputs(target: nn.Module, *, range: Tuple[float, float] = (-5.0, 5.0), bins: int = 100,
                  reset: bool = True) -> InputRecorder:
    """Starts collecting a histogram of the inputs of every torch_rational activation in ``target``
    (one ``torch.histc`` per call: meant for a few evaluation batches, in eager mode). Opt-in:
    nothing is recorded, and nothing costs, until this is called.

    Use as ``with torch_rational.record_inputs(model): model(x)`` or keep the returned handle and
    call ``remove()``. ``reset=False`` keeps adding to histograms from an earlier recording."""
    lo, hi = (float(r) for r in range)
    if not lo < hi:
        raise ValueError(f"torch_rational.record_inputs: range must satisfy lo < hi, got {range!r}")
    if int(bins) < 1:
        raise ValueError(f"torch_rational.record_inputs: bins must be >= 1, got {bins!r}")
    acts = _activations(target)
    if not acts:
        raise ValueError("torch_rational.record_inputs: target has no torch_rational activation module")
    rec = InputRecorder()
    for name, m in acts:
        hist = getattr(m, _HIST_ATTR, None)
        if reset or hist is None or hist.range != (lo, hi) or hist.bins != int(bins):
            hist = InputHistogram((lo, hi), int(bins))
            setattr(m, _HIST_ATTR, hist)
        rec.histograms[name] = hist
        rec._handles.append(m.register_forward_pre_hook(_RecordHook(hist)))
    return rec


def _bare_copy(module: nn.Module) -> nn.Module:
    """A float64 CPU copy of ``module`` without hooks (plotting must not record its own inputs)."""
    m = copy.deepcopy(module)
    for hooks in (m._forward_pre_hooks, m._forward_hooks):
        hooks.clear()
    return m.to(device="cpu", dtype=torch.float64).eval()


def evaluate_curve(module: nn.Module, x: torch.Tensor, state: Optional[dict] = None) -> torch.Tensor:
    """``module`` (in eval mode, float64, on the CPU; optionally with ``state`` loaded) on the 1-D
    ``x``: a ``(len(x), G)`` tensor, column ``g`` the curve of coefficient group ``g``."""
    m = _bare_copy(module)
    if state is not None:
        m.load_state_dict(state)
    if getattr(m, "normalize", None):
        # ERA's optional input normalisation is not part of the activation's shape.
        with contextlib.suppress(AttributeError, TypeError):
            m.normalize = None
    g = int(getattr(m, "num_groups", 1) or 1)
    x = x.to(torch.float64).reshape(-1)
    if g == 1:
        with torch.no_grad():
            return m(x).reshape(-1, 1)
    # One channel per group along channel_dim; the grid along another dimension.
    cd = int(getattr(m, "channel_dim", 1))
    ndim = max(2, cd + 1 if cd >= 0 else -cd)
    cpos = cd % ndim
    other = 0 if cpos != 0 else 1
    shape = [1] * ndim
    shape[cpos], shape[other] = g, x.numel()
    view = [1] * ndim
    view[other] = x.numel()
    xx = x.reshape(view).expand(shape).contiguous()
    with torch.no_grad():
        y = m(xx)
    return y.movedim((other, cpos), (0, 1)).reshape(x.numel(), g)


def _init_curve(module: nn.Module, x: torch.Tensor) -> Tuple[Optional[torch.Tensor], str]:
    info = getattr(module, _INIT_ATTR, None)
    if info is not None:
        return evaluate_curve(module, x, info["state"]), "init"
    name = getattr(module, "init", None)
    if isinstance(name, str) and name != "random":
        try:
            return activation_function(name, x.to(torch.float64)).reshape(-1, 1), f"{name} (init function)"
        except (RuntimeError, ValueError):
            pass
    return None, ""


def _import_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("torch_rational.plot needs matplotlib, an optional dependency: "
                          "`pip install matplotlib`") from None
    return Figure


# Groups beyond this many share one colour and one legend entry: a legend of 64 "group k" lines says nothing.
_MAX_LABELLED_GROUPS = 10
# Overlays are dotted in colours from another palette than the groups' (tab10), so they never pass
# for a group.
_OVERLAY_COLORS = ("#7f3b08", "#542788", "#b35806", "#1b7837", "#c51b7d", "#2166ac")


def _default_range(acts: List[Tuple[str, nn.Module]], histogram: bool) -> Tuple[float, float]:
    """The first recorded input histogram's range (when ``histogram``), else (-5, 5)."""
    hists = [getattr(m, _HIST_ATTR, None) for _, m in acts]
    hists = [h for h in hists if h is not None and h.total]
    return hists[0].range if (histogram and hists) else (-5.0, 5.0)


def _check_range(range, who: str) -> Tuple[float, float]:
    lo, hi = (float(r) for r in range)
    if not lo < hi:
        raise ValueError(f"{who}: range must satisfy lo < hi, got {range!r}")
    return lo, hi


def _named_functions(names, x: torch.Tensor, argument: str, who: str) -> List[Tuple[str, torch.Tensor]]:
    """[(name, activation_function(name, x))] for a name or a sequence of names; a TypeError naming
    ``argument`` for anything else, a ValueError for a name the package does not know."""
    if isinstance(names, str):
        names = (names,)
    try:
        names = list(names)
    except TypeError:
        raise TypeError(f"{who}: {argument} must be a function name or a sequence of names, got {names!r}") from None
    curves = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{who}: {argument} must hold function names (str), got {name!r}")
        try:
            curves.append((name, activation_function(name, x.to(torch.float64))))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{who}: {argument}: unknown function {name!r} ({str(e).splitlines()[0]})") from None
    return curves


def _distinct_columns(curves: torch.Tensor) -> torch.Tensor:
    """``curves`` (N, G) reduced to one column when every group holds the same curve (a grouped
    module's init usually does), so it is drawn and labelled once."""
    if curves.shape[1] > 1 and bool((curves == curves[:, :1]).all()):
        return curves[:, :1]
    return curves


def _curve_limits(curves: List[torch.Tensor]) -> Optional[Tuple[float, float]]:
    """(lo, hi) over the finite values of ``curves`` with a 5 % margin, or None when none is finite."""
    finite = [c[torch.isfinite(c)] for c in curves if c is not None]
    finite = torch.cat(finite) if finite else torch.empty(0, dtype=torch.float64)
    if not finite.numel():
        return None
    lo, hi = float(finite.min()), float(finite.max())
    pad = 0.05 * (hi - lo) + 1e-6
    return lo - pad, hi + pad


def _histogram_density(hist: Optional[InputHistogram]):
    """(left edges, density, bin width) of a recorded histogram, or None when nothing was recorded."""
    if hist is None or not hist.total or hist.counts is None:
        return None
    edges = hist.edges()
    width = float(edges[1] - edges[0])
    density = hist.counts.detach().cpu().to(torch.float64) / max(hist.total, 1) / width
    return edges[:-1], density, width


def plot(
    target: nn.Module,
    path: Union[str, Path, None] = None,
    *,
    range: Optional[Tuple[float, float]] = None,
    num_points: int = 801,
    histogram: bool = True,
    overlay: Union[str, Tuple[str, ...], List[str]] = (),
    ncols: int = 3,
    title: Optional[str] = None,
):
    """Plots the learned curve of one torch_rational activation, or of every activation in a model
    (one panel each), against its init, over ``range``.

    Args:
        target: an activation module or a model containing them.
        path: where to write the figure; the suffix picks the format (``.png``, ``.svg``, ``.pdf``).
            ``None``: only return the figure.
        range: x range (default: the recorded histogram's range, else (-5, 5)).
        num_points: points on the curve.
        histogram: draw the inputs recorded by :func:`record_inputs`, when there are any.
        overlay: names of known functions (see :func:`activation_function`, e.g. ``("relu", "gelu")``)
            drawn dotted in every panel for comparison.
        ncols: panels per row.
        title: figure title.

    The init curve is the module's parameters as stored by :func:`remember_init` (done by
    ``replace_activations``), else the named function of its ``init`` argument. Groups (``num_groups``
    > 1) are drawn as one line each ("group k" in the legend, up to 10 groups; more share one
    colour and one entry); an init shared by every group is drawn once. Curves are evaluated in
    float64 on the CPU in eval mode.

    Returns:
        the ``matplotlib.figure.Figure``.
    """
    Figure = _import_figure()
    acts = _activations(target)
    if not acts:
        raise ValueError("torch_rational.plot: target has no torch_rational activation module")
    if path is not None:
        path = Path(path)
        if path.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ValueError(f"torch_rational.plot: path must end in .png, .svg or .pdf, got {str(path)!r}")
    if int(num_points) < 2:
        raise ValueError(f"torch_rational.plot: num_points must be >= 2, got {num_points!r}")
    lo, hi = _check_range(_default_range(acts, histogram) if range is None else range, "torch_rational.plot")
    x = torch.linspace(lo, hi, int(num_points), dtype=torch.float64)
    overlays = _named_functions(overlay, x, "overlay", "torch_rational.plot")

    fig, axes = _panel_figure(Figure, len(acts), ncols, title)
    for ax, (name, m) in zip(axes, acts):
        init, init_label = _init_curve(m, x)
        hist = getattr(m, _HIST_ATTR, None) if histogram else None
        draw_curves(ax, x, evaluate_curve(m, x), init=init, init_label=init_label, histogram=hist,
                    overlays=overlays, title=_panel_title(name, m))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def _panel_figure(Figure, n: int, ncols: int, title: Optional[str]):
    """A figure with ``n`` visible panels, ``ncols`` a row, and the list of those panels' axes."""
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.3 * nrows + (0.4 if title else 0.0)), layout="constrained")
    return fig, _panel_axes(fig, n, ncols, title)


def _panel_axes(fig, n: int, ncols: int, title: Optional[str]):
    """``n`` visible panels on ``fig``, ``ncols`` a row (the frames of an animation redraw on one figure)."""
    ncols = max(1, min(int(ncols), n))
    nrows = math.ceil(n / ncols)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return axes[:n]


def _panel_title(name: str, module: nn.Module) -> str:
    info = getattr(module, _INIT_ATTR, None) or {}
    sub = type(module).__name__ + (f" (was {info['replaced']})" if info.get("replaced") else "")
    g = int(getattr(module, "num_groups", 1) or 1)
    if g > 1:
        sub += f", {g} groups"
    return f"module {name!r}\n{sub}" if name else sub


def draw_curves(ax, x: torch.Tensor, learned: torch.Tensor, *, init: Optional[torch.Tensor] = None,
                init_label: str = "init", histogram: Optional[InputHistogram] = None,
                overlays: List[Tuple[str, torch.Tensor]] = (), title: str = "",
                ylim: Optional[Tuple[float, float]] = None, histogram_top: Optional[float] = None) -> None:
    """Draws one panel: the ``learned`` (N, G) curves on ``x``, the init dashed, the ``overlays``
    (name, curve) dotted and the recorded input ``histogram`` as grey bars behind them. ``ylim`` and
    ``histogram_top`` fix the axes (frames of an animation share them); else they fit the curves.
    Shared by :func:`plot` and the snapshots of ``torch_rational.monitor``."""
    xs = x.numpy()
    density = _histogram_density(histogram)
    if density is not None:
        left, dens, width = density
        hax = ax.twinx()
        hax.bar(left.numpy(), dens.numpy(), width=width, align="edge", color="0.8", alpha=0.8, zorder=0)
        outside = int(histogram.below.item()) + int(histogram.above.item()) if histogram.below is not None else 0
        hax.set_ylabel(f"input density (n={histogram.total}" + (f", {outside} outside" if outside else "") + ")",
                       fontsize=7, color="0.45")
        hax.tick_params(labelsize=6, colors="0.45")
        if histogram_top is not None:
            hax.set_ylim(0.0, histogram_top)
        ax.set_zorder(hax.get_zorder() + 1)  # curves above the bars
        ax.patch.set_visible(False)
    g = learned.shape[1]
    labelled = g <= _MAX_LABELLED_GROUPS
    for k in builtins.range(g):
        if g == 1:
            label = "learned"
        elif labelled:
            label = f"group {k}"
        else:
            label = f"learned ({g} groups)" if k == 0 else None
        ax.plot(xs, learned[:, k].numpy(), color=f"C{k}" if labelled else "C0", lw=1.6 if g == 1 else 1.0,
                alpha=1.0 if g <= 8 else max(0.15, 8.0 / g), label=label)
    if init is not None:  # dashed, on top: visible where the learned curve still equals it
        init = _distinct_columns(init)
        for k in builtins.range(init.shape[1]):
            ax.plot(xs, init[:, k].numpy(), "--", color="black", lw=1.1, zorder=3,
                    label=init_label if k == 0 else None)
    for i, (name, curve) in enumerate(overlays):
        color = _OVERLAY_COLORS[i % len(_OVERLAY_COLORS)]
        ax.plot(xs, curve.numpy(), ":", color=color, lw=1.5, label=name, zorder=2)
    limits = ylim or _curve_limits([learned] + ([init] if init is not None else []))
    if limits is not None:
        ax.set_ylim(*limits)
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.axvline(0.0, color="0.6", lw=0.5)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x", fontsize=8)
    ax.tick_params(labelsize=7)
    entries = len(ax.get_legend_handles_labels()[1])
    ax.legend(fontsize=7, loc="upper left", ncol=2 if entries > 6 else 1)
