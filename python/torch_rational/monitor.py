"""Watching what activations learn: snapshots of the learned curves over training (with the input
histograms recorded at the time), an animated GIF of their evolution, a TensorBoard hook, and
:func:`best_fit`, which names the known function a learned curve is closest to.

Everything here reads the modules; nothing changes them or their training. matplotlib (plots, GIF),
pillow (GIF) and tensorboard (the hook with a log directory) are optional dependencies, imported
only when used.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

import torch
from torch import nn

from .families import activations_in
from .plot import (
    _HIST_ATTR,
    InputHistogram,
    _check_range,
    _curve_limits,
    _default_range,
    _histogram_density,
    _import_figure,
    _init_curve,
    _named_functions,
    _panel_axes,
    _panel_figure,
    _panel_title,
    draw_curves,
    evaluate_curve,
    plot,
)

__all__ = ["KNOWN_FUNCTIONS", "BestFit", "Snapshot", "Snapshots", "TensorBoardHook", "best_fit"]

#: The candidates :func:`best_fit` compares with by default: the named functions of
#: :func:`torch_rational.activation_function`, less the aliases (silu is swish, celu is elu).
KNOWN_FUNCTIONS = ("relu", "leaky_relu", "relu6", "elu", "selu", "gelu", "swish", "mish", "hardswish", "softplus",
                   "tanh", "hardtanh", "sigmoid", "identity")


def _checked_activations(target: nn.Module, who: str) -> List[Tuple[str, nn.Module]]:
    acts = activations_in(target)
    if not acts:
        raise ValueError(f"{who}: target has no torch_rational activation module")
    return acts


def _grid(target_acts, range, num_points: int, who: str) -> torch.Tensor:
    if int(num_points) < 2:
        raise ValueError(f"{who}: num_points must be >= 2, got {num_points!r}")
    lo, hi = _check_range(_default_range(target_acts, True) if range is None else range, who)
    return torch.linspace(lo, hi, int(num_points), dtype=torch.float64)


# ------------------------------------------------------------------------------------------------
# Snapshots and the evolution GIF


class Snapshot(NamedTuple):
    step: int
    curves: Dict[str, torch.Tensor]  #: module name -> (num_points, G) float64 learned curves
    histograms: Dict[str, InputHistogram]  #: module name -> a copy of its recorded inputs (if any)


class Snapshots:
    """The learned curves of every torch_rational activation in ``target``, captured over training.

    ::

        snaps = torch_rational.monitor.Snapshots(model)
        for epoch in range(epochs):
            train_one_epoch(model)
            with torch_rational.record_inputs(model), torch.no_grad():  # optional: input histograms
                model(eval_batch)
            snaps.capture(epoch)
        snaps.save_gif("evolution.gif")

    ``capture`` evaluates each curve on ``num_points`` of ``range`` (default: the recorded
    histogram's range, else (-5, 5)) in float64 on the CPU, and copies the input histogram each
    module holds at that moment (from :func:`torch_rational.record_inputs`).
    """

    def __init__(self, target: nn.Module, *, range: Optional[Tuple[float, float]] = None, num_points: int = 201):
        self._acts = _checked_activations(target, "torch_rational.monitor.Snapshots")
        self.x = _grid(self._acts, range, num_points, "torch_rational.monitor.Snapshots")
        # The init does not move: evaluated once, from what remember_init stored (or the init function).
        self.init = {name: _init_curve(m, self.x) for name, m in self._acts}
        self.titles = {name: _panel_title(name, m) for name, m in self._acts}
        self.snapshots: List[Snapshot] = []

    def __len__(self) -> int:
        return len(self.snapshots)

    def capture(self, step: Optional[int] = None) -> Snapshot:
        """Stores the curves as they are now, labelled ``step`` (default: the number of snapshots so far)."""
        step = len(self.snapshots) if step is None else int(step)
        curves = {name: evaluate_curve(m, self.x) for name, m in self._acts}
        histograms = {}
        for name, m in self._acts:
            hist = getattr(m, _HIST_ATTR, None)
            if hist is not None and hist.total:
                histograms[name] = copy.deepcopy(hist)
        snap = Snapshot(step, curves, histograms)
        self.snapshots.append(snap)
        return snap

    def save_gif(self, path: Union[str, Path], *, fps: float = 2.0, ncols: int = 3, dpi: int = 80,
                 overlay=(), title: str = "learned activations") -> Path:
        """Writes an animated GIF, one frame per snapshot: every activation's curves (its init
        dashed, ``overlay`` functions dotted) over its input histogram, on axes fixed across frames
        so the motion is the curves'. Needs matplotlib and pillow."""
        path = Path(path)
        if path.suffix.lower() != ".gif":
            raise ValueError(f"torch_rational.monitor.Snapshots.save_gif: path must end in .gif, got {str(path)!r}")
        if not self.snapshots:
            raise ValueError("torch_rational.monitor.Snapshots.save_gif: no snapshot captured yet (call capture())")
        if not fps > 0:
            raise ValueError(f"torch_rational.monitor.Snapshots.save_gif: fps must be > 0, got {fps!r}")
        Figure = _import_figure()
        from matplotlib.animation import PillowWriter

        if not PillowWriter.isAvailable():
            raise ImportError("torch_rational.monitor.Snapshots.save_gif needs pillow, an optional dependency: "
                              "`pip install pillow`")
        overlays = _named_functions(overlay, self.x, "overlay", "torch_rational.monitor.Snapshots.save_gif")
        names = [name for name, _ in self._acts]
        ylims, tops = {}, {}
        for name in names:  # fixed axes: the range of every frame together
            init = self.init[name][0]
            ylims[name] = _curve_limits([s.curves[name] for s in self.snapshots] + ([init] if init is not None else []))
            densities = [_histogram_density(s.histograms.get(name)) for s in self.snapshots]
            tops[name] = max((float(d[1].max()) for d in densities if d is not None), default=0.0) * 1.05 or None

        fig, _ = _panel_figure(Figure, len(names), ncols, title)
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = PillowWriter(fps=fps)
        with writer.saving(fig, str(path), dpi):
            for snap in self.snapshots:
                fig.clear()
                axes = _panel_axes(fig, len(names), ncols, f"{title}: step {snap.step}")
                for ax, name in zip(axes, names):
                    init, init_label = self.init[name]
                    draw_curves(ax, self.x, snap.curves[name], init=init, init_label=init_label,
                                histogram=snap.histograms.get(name), overlays=overlays, title=self.titles[name],
                                ylim=ylims[name], histogram_top=tops[name])
                writer.grab_frame()
        return path


# ------------------------------------------------------------------------------------------------
# TensorBoard


def _summary_writer(log_dir: Union[str, Path]):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("torch_rational.monitor.TensorBoardHook: writing to a log directory needs tensorboard, "
                          "an optional dependency: `pip install tensorboard` (or pass your own SummaryWriter)"
                          ) from None
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardHook:
    """Logs every torch_rational activation of ``target`` to TensorBoard when called with the
    global step: its curve against its init as a figure (``<tag>/<module name>``, under IMAGES) and,
    when inputs were recorded with :func:`torch_rational.record_inputs`, their histogram
    (``<tag>/<module name>/inputs``, under HISTOGRAMS).

    ``writer`` is a ``torch.utils.tensorboard.SummaryWriter`` (or anything with its ``add_figure``
    and ``add_histogram_raw``) or a log directory, for which a SummaryWriter is made (tensorboard
    must be installed). Call it every ``every`` steps or call it always with ``every=N``::

        hook = torch_rational.monitor.TensorBoardHook(model, "runs/tb", every=100)
        for step, (x, y) in enumerate(loader):
            ...
            hook(step)
        hook.close()
    """

    def __init__(self, target: nn.Module, writer, *, range: Optional[Tuple[float, float]] = None,
                 num_points: int = 201, every: int = 1, tag: str = "activations", overlay=()):
        who = "torch_rational.monitor.TensorBoardHook"
        self._acts = _checked_activations(target, who)
        if int(every) < 1:
            raise ValueError(f"{who}: every must be >= 1, got {every!r}")
        self.x = _grid(self._acts, range, num_points, who)
        _named_functions(overlay, self.x, "overlay", who)  # a typo fails here, not at the first step
        self.range = (float(self.x[0]), float(self.x[-1]))
        self.num_points, self.every, self.tag, self.overlay = int(num_points), int(every), tag, overlay
        self._owns_writer = isinstance(writer, (str, Path))
        self.writer = _summary_writer(writer) if self._owns_writer else writer
        for method in ("add_figure", "add_histogram_raw"):
            if not callable(getattr(self.writer, method, None)):
                raise TypeError(f"{who}: writer must be a SummaryWriter or a log directory, got {writer!r}")

    def __call__(self, step: int) -> bool:
        """Logs at ``step`` when it is a multiple of ``every``; returns whether it logged."""
        if int(step) % self.every:
            return False
        for name, m in self._acts:
            key = f"{self.tag}/{name or type(m).__name__}"
            fig = plot(m, range=self.range, num_points=self.num_points, overlay=self.overlay,
                       title=f"{key} at step {step}")
            self.writer.add_figure(key, fig, global_step=int(step), close=True)
            hist = getattr(m, _HIST_ATTR, None)
            if hist is not None and hist.total and hist.counts is not None:
                self.writer.add_histogram_raw(f"{key}/inputs", global_step=int(step), **_histogram_raw(hist))
        return True

    def close(self) -> None:
        """Closes the writer when the hook made it (a writer passed in stays the caller's)."""
        if self._owns_writer:
            self.writer.close()


def _histogram_raw(hist: InputHistogram) -> dict:
    """SummaryWriter.add_histogram_raw's arguments for the inputs inside the histogram's range.
    sum and sum_squares are from the bin centres (the raw values are not kept)."""
    counts = hist.counts.detach().cpu().to(torch.float64)
    edges = hist.edges()
    centres = 0.5 * (edges[:-1] + edges[1:])
    filled = torch.nonzero(counts).reshape(-1)
    lo, hi = (int(filled[0]), int(filled[-1])) if filled.numel() else (0, hist.bins - 1)
    return {"min": float(edges[lo]), "max": float(edges[hi + 1]), "num": int(counts.sum()),
            "sum": float((counts * centres).sum()), "sum_squares": float((counts * centres**2).sum()),
            "bucket_limits": edges[1:].tolist(), "bucket_counts": counts.tolist()}


# ------------------------------------------------------------------------------------------------
# best_fit


class BestFit(NamedTuple):
    name: str  #: the closest candidate
    distance: float  #: its weighted RMS distance to the learned curve
    distances: Dict[str, float]  #: every candidate's distance, closest first
    weighted: bool  #: whether the recorded input histogram weighted the distance


def best_fit(module: nn.Module, candidates=KNOWN_FUNCTIONS, *, range: Optional[Tuple[float, float]] = None,
             num_points: int = 801, group: Optional[int] = None, weighted: bool = True) -> BestFit:
    """Names the known function the learned curve of the activation ``module`` is closest to.

    The distance is the root mean square of ``learned(x) - candidate(x)`` on ``num_points`` of
    ``range`` (default: the recorded histogram's range, else (-5, 5)); when inputs were recorded
    with :func:`torch_rational.record_inputs` (and ``weighted``), each point is weighted by the
    share of inputs in its histogram bin, so the curve counts where the activation is used. With
    groups, ``group`` picks one; ``None`` uses all of them (the RMS over every group's curve).

    ``candidates``: names of :func:`torch_rational.activation_function` (default
    :data:`KNOWN_FUNCTIONS`). The comparison is as is: no scaling or shifting of the candidates.
    """
    who = "torch_rational.monitor.best_fit"
    acts = activations_in(module)
    if len(acts) != 1 or acts[0][0] != "":
        raise ValueError(f"{who}: module must be one torch_rational activation module, got {type(module).__name__}")
    x = _grid(acts, range, num_points, who)
    named = _named_functions(candidates, x, "candidates", who)
    if not named:
        raise ValueError(f"{who}: candidates is empty")
    learned = evaluate_curve(module, x)
    if group is not None:
        if not 0 <= int(group) < learned.shape[1]:
            raise ValueError(f"{who}: group must be in [0, {learned.shape[1]}), got {group!r}")
        learned = learned[:, int(group):int(group) + 1]
    weights = _input_weights(getattr(module, _HIST_ATTR, None), x) if weighted else None
    if weights is not None and not float(weights.sum()) > 0:
        raise ValueError(f"{who}: no recorded input falls in range {(float(x[0]), float(x[-1]))}; "
                         "pass the range the inputs cover, or weighted=False")
    w = torch.ones_like(x) if weights is None else weights
    w = (w / w.sum()).reshape(-1, 1)
    distances = {name: float(((learned - y.reshape(-1, 1)) ** 2 * w).sum(0).mean().sqrt()) for name, y in named}
    ordered = dict(sorted(distances.items(), key=lambda kv: kv[1]))
    name = next(iter(ordered))
    return BestFit(name, ordered[name], ordered, weights is not None)


def _input_weights(hist: Optional[InputHistogram], x: torch.Tensor) -> Optional[torch.Tensor]:
    """Each point's weight: the recorded count of its histogram bin (0 outside the histogram's
    range); None when nothing was recorded."""
    if hist is None or not hist.total or hist.counts is None:
        return None
    lo, hi = hist.range
    counts = hist.counts.detach().cpu().to(torch.float64)
    index = ((x - lo) / (hi - lo) * hist.bins).floor().clamp(0, hist.bins - 1).long()
    inside = (x >= lo) & (x <= hi)
    return torch.where(inside, counts[index], torch.zeros_like(x))
