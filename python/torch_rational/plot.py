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
from .families import remember_init

__all__ = ["plot", "remember_init", "record_inputs", "InputHistogram", "InputRecorder", "evaluate_curve"]

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


def plot(
    target: nn.Module,
    path: Union[str, Path, None] = None,
    *,
    range: Optional[Tuple[float, float]] = None,
    num_points: int = 801,
    histogram: bool = True,
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
        ncols: panels per row.
        title: figure title.

    The init curve is the module's parameters as stored by :func:`remember_init` (done by
    ``replace_activations``), else the named function of its ``init`` argument. Groups (``num_groups``
    > 1) are drawn as one line each. Curves are evaluated in float64 on the CPU in eval mode.

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
    if range is None:
        hists = [getattr(m, _HIST_ATTR, None) for _, m in acts]
        hists = [h for h in hists if h is not None and h.total]
        range = hists[0].range if (histogram and hists) else (-5.0, 5.0)
    lo, hi = (float(r) for r in range)
    if not lo < hi:
        raise ValueError(f"torch_rational.plot: range must satisfy lo < hi, got {range!r}")
    x = torch.linspace(lo, hi, int(num_points), dtype=torch.float64)

    ncols = max(1, min(int(ncols), len(acts)))
    nrows = math.ceil(len(acts) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.3 * nrows + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, (name, m) in enumerate(acts):
        ax = axes[i // ncols][i % ncols]
        _draw_panel(ax, name, m, x, histogram)
    for j in builtins.range(len(acts), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if title:
        fig.suptitle(title)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig



def _draw_panel(ax, name: str, module: nn.Module, x: torch.Tensor, histogram: bool) -> None:
    xs = x.numpy()
    hist = getattr(module, _HIST_ATTR, None) if histogram else None
    if hist is not None and hist.total and hist.counts is not None:
        hax = ax.twinx()
        counts = hist.counts.detach().cpu()
        edges = hist.edges()
        width = float(edges[1] - edges[0])
        density = (counts / max(hist.total, 1) / width).numpy()
        hax.bar(edges[:-1].numpy(), density, width=width, align="edge", color="0.8", alpha=0.8, zorder=0)
        outside = int(hist.below.item()) + int(hist.above.item()) if hist.below is not None else 0
        hax.set_ylabel(f"input density (n={hist.total}" + (f", {outside} outside" if outside else "") + ")",
                       fontsize=7, color="0.45")
        hax.tick_params(labelsize=6, colors="0.45")
        ax.set_zorder(hax.get_zorder() + 1)  # curves above the bars
        ax.patch.set_visible(False)
    init, init_label = _init_curve(module, x)
    learned = evaluate_curve(module, x)
    g = learned.shape[1]
    alpha = 1.0 if g <= 8 else max(0.15, 8.0 / g)
    for k in builtins.range(g):
        ax.plot(xs, learned[:, k].numpy(), color=f"C{k % 10}" if g <= 10 else "C0", lw=1.6 if g == 1 else 1.0,
                alpha=alpha, label="learned" if k == 0 else None)
    if init is not None:  # dashed, on top: visible where the learned curve still equals it
        ax.plot(xs, init.numpy(), "--", color="black", lw=1.1, label=init_label, zorder=3)
    finite = learned[torch.isfinite(learned)]
    if finite.numel():
        lo, hi = float(finite.min()), float(finite.max())
        if init is not None and torch.isfinite(init).all():
            lo, hi = min(lo, float(init.min())), max(hi, float(init.max()))
        pad = 0.05 * (hi - lo) + 1e-6
        ax.set_ylim(lo - pad, hi + pad)
    ax.axhline(0.0, color="0.6", lw=0.5)
    ax.axvline(0.0, color="0.6", lw=0.5)
    info = getattr(module, _INIT_ATTR, None) or {}
    sub = type(module).__name__ + (f" (was {info['replaced']})" if info.get("replaced") else "")
    if g > 1:
        sub += f", {g} groups"
    ax.set_title(f"module {name!r}\n{sub}" if name else sub, fontsize=9)
    ax.set_xlabel("x", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
