#!/usr/bin/env python3
"""Summarise rational_train runs: a results table over seeds, accuracy curves and learned activation shapes.

Reads every summary.json (and the metrics.csv beside it) found below the given run or sweep directories and
writes, into --output:
  results.md           mean ± sample std over seeds per (model, dataset, activation), printed as well
  accuracy_curves.png  test accuracy vs epoch, mean over seeds, one panel per model/dataset
  activations.png      learned activation shapes (solid) against their initialisation (dashed)
  pruning.png          when runs have pruning.csv (rational_train --prune-rounds): test accuracy against the
                       fraction of conv filters pruned, mean over seeds, one line per activation

    python3 scripts/report.py runs/sweep_lenet --output runs/sweep_lenet/report
    python3 scripts/report.py runs/sweep_lenet runs/sweep_vgg8 runs/demo --output runs/report

A directory with run files (metrics.csv, checkpoint.pt, log.txt) but no readable summary.json, and a run that
a sweep planned (sweep.json) but never started, are listed as incomplete.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

# Activations with trainable parameters: the project's rational family and ERA/PWLU, and the learnable
# baselines. Every other name (relu, swish, ...) is a fixed activation.
LEARNABLE = ("pau", "rational", "rpau", "opau", "hp1", "hp2", "era", "pwlu", "prelu", "maxout", "mixture", "apl", "srelu")
FIXED = ("relu", "relu6", "leaky_relu", "rrelu", "elu", "celu", "swish", "silu", "gelu")
METRICS_HEADER = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds",
                  "images_per_second"]
PRUNING_HEADER = ["round", "pruned_fraction", "test_accuracy", "test_loss", "alive_filters", "total_filters"]
RUN_FILES = ("metrics.csv", "checkpoint.pt", "checkpoint.pt.tmp", "log.txt")
MANIFEST = "sweep.json"
MAX_SLOTS_PER_PANEL = 6  # MobileNetV2 has dozens of slots; more lines than this are unreadable
# Below this many seeds in either row, a difference is no evidence: the spread of 2 seeds is itself a guess.
MIN_SEEDS_FOR_VERDICT = 3
DASH = "—"


@dataclass
class RunResult:
    path: Path
    summary: dict
    epochs_curve: list[int] = field(default_factory=list)  # from metrics.csv
    test_acc_curve: list[float] = field(default_factory=list)
    pruning: dict[int, tuple[float, float]] = field(default_factory=dict)  # round -> (pruned fraction, test acc)

    @property
    def model(self) -> str:
        return str(self.summary["model"])

    @property
    def dataset(self) -> str:
        return str(self.summary["dataset"])

    @property
    def activation(self) -> str:
        return str(self.summary["activation"])

    @property
    def seed(self):
        return self.summary.get("seed")


@dataclass
class Group:
    model: str
    dataset: str
    activation: str
    label: str
    runs: list[RunResult]

    @property
    def learnable(self) -> bool:
        if self.activation in LEARNABLE:
            return True
        # An unknown name counts as learnable when the binary reported parameters for it.
        return self.activation not in FIXED and any(r.summary.get("activation_parameters") for r in self.runs)

    @property
    def seeds(self) -> int:
        """Distinct seeds (a seed counted twice, e.g. the same sweep passed twice, is one piece of evidence)."""
        return len({str(r.seed) for r in self.runs})

    def values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.runs if is_number(r.summary.get(key))]


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample std with ddof=1); std is NaN for fewer than two values."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def fmt_pct(mean: float, std: float) -> str:
    if math.isnan(mean):
        return DASH
    return f"{100 * mean:.2f} ± {DASH if math.isnan(std) else f'{100 * std:.2f}'}"


# ------------------------------------------------------------------------------------------------
# Reading run directories


def read_metrics(path: Path) -> tuple[list[int], list[float], str | None]:
    """(epochs, test accuracies) from metrics.csv; rows that do not parse are skipped (a run killed mid-write)."""
    if not path.is_file():
        return [], [], None
    epochs, accs = [], []
    warning = None
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if header != METRICS_HEADER:
                warning = f"{path}: unexpected header {','.join(header)}"
            if "epoch" not in header or "test_accuracy" not in header:
                return [], [], warning
            for row in reader:
                try:
                    epoch, acc = int(row["epoch"]), float(row["test_accuracy"])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(acc):
                    epochs.append(epoch)
                    accs.append(acc)
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        return [], [], f"{path}: unreadable ({e})"
    # A resumed run may repeat an epoch; the last row for it wins.
    by_epoch = dict(zip(epochs, accs))
    ordered = sorted(by_epoch)
    return ordered, [by_epoch[e] for e in ordered], warning


def read_pruning(path: Path) -> tuple[dict[int, tuple[float, float]], str | None]:
    """round -> (pruned fraction, test accuracy) from pruning.csv; {} when there is none."""
    if not path.is_file():
        return {}, None
    rows: dict[int, tuple[float, float]] = {}
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            if not {"round", "pruned_fraction", "test_accuracy"} <= set(header):
                return {}, f"{path}: unexpected header {','.join(header)}"
            for row in reader:
                try:
                    r, frac, acc = int(row["round"]), float(row["pruned_fraction"]), float(row["test_accuracy"])
                except (TypeError, ValueError):
                    continue
                if math.isfinite(frac) and math.isfinite(acc):
                    rows[r] = (frac, acc)  # a repeated round (resume): the last row wins
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        return {}, f"{path}: unreadable ({e})"
    return dict(sorted(rows.items())), None


def load_run(directory: Path) -> tuple[RunResult | None, str]:
    """(run, "") or (None, why it is incomplete)."""
    try:
        summary = json.loads((directory / "summary.json").read_text())
    except FileNotFoundError:
        return None, "no summary.json (not finished, or failed)"
    except (OSError, ValueError) as e:
        return None, f"unreadable summary.json ({e.__class__.__name__}: {e})"
    if not isinstance(summary, dict):
        return None, "summary.json is not a JSON object"
    missing = [k for k in ("model", "dataset", "activation") if not isinstance(summary.get(k), str)]
    if not is_number(summary.get("test_accuracy")):
        missing.append("test_accuracy")
    if missing:
        return None, f"summary.json lacks {', '.join(missing)}"
    run = RunResult(directory, summary)
    run.epochs_curve, run.test_acc_curve, warning = read_metrics(directory / "metrics.csv")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    run.pruning, warning = read_pruning(directory / "pruning.csv")
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return run, ""


def collect(paths: list[Path]) -> tuple[list[RunResult], list[tuple[Path, str]]]:
    """Every run below the given directories (each once), and the incomplete ones with the reason."""
    runs: dict[Path, RunResult] = {}
    incomplete: dict[Path, str] = {}
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            here = Path(dirpath)
            key = here.resolve()
            if "summary.json" in filenames:
                run, reason = load_run(here)
                if run is not None:
                    runs[key] = run
                else:
                    incomplete[key] = reason
            elif any(f in filenames for f in RUN_FILES):
                incomplete[key] = "no summary.json (not finished, or failed)"
            if MANIFEST in filenames:
                # Runs a sweep planned but never started have no directory at all.
                try:
                    planned = json.loads((here / MANIFEST).read_text()).get("runs", [])
                except (OSError, ValueError, AttributeError):
                    planned = []
                for name in planned:
                    if isinstance(name, str) and not (here / name).exists():
                        incomplete[(here / name).resolve()] = "planned by the sweep, not started"
    ordered = sorted(runs.values(), key=lambda r: (r.model, r.dataset, r.activation, str(r.seed), str(r.path)))
    return ordered, sorted(incomplete.items())


def options_label(options, keys) -> str:
    if not isinstance(options, dict):
        return "default"
    parts = []
    for k in keys:
        v = options.get(k)
        parts.append(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}")
    return " ".join(parts) or "default"


def group_runs(runs: list[RunResult]) -> list[Group]:
    """One group per (model, dataset, activation); split by activation_options only where they differ."""
    by_key: dict[tuple[str, str, str], list[RunResult]] = {}
    for r in runs:
        by_key.setdefault((r.model, r.dataset, r.activation), []).append(r)
    groups = []
    for (model, dataset, act), members in by_key.items():
        by_opts: dict[str, list[RunResult]] = {}
        for r in members:
            by_opts.setdefault(json.dumps(r.summary.get("activation_options"), sort_keys=True), []).append(r)
        options = [json.loads(k) for k in by_opts]
        # Label with the options that tell the groups apart, not every option the binary records.
        dicts = [o for o in options if isinstance(o, dict)]
        keys = sorted({k for o in dicts for k in o if len({json.dumps(d.get(k)) for d in dicts}) > 1})
        for opts, rs in zip(options, by_opts.values()):
            label = act if len(by_opts) == 1 else f"{act} ({options_label(opts, keys)})"
            groups.append(Group(model, dataset, act, label, rs))
    return groups


def duplicate_seeds(groups: list[Group]) -> list[str]:
    """Warnings for a seed that appears twice in a group (the same sweep passed twice, or copied runs)."""
    warnings = []
    for g in groups:
        seen: dict[str, list[str]] = {}
        for r in g.runs:
            seen.setdefault(str(r.seed), []).append(str(r.path))
        for seed, paths in seen.items():
            if len(paths) > 1:
                warnings.append(f"{g.model}/{g.dataset}/{g.label}: seed {seed} counted {len(paths)} times "
                                f"({', '.join(paths)})")
    return warnings


# ------------------------------------------------------------------------------------------------
# Table


def epochs_text(group: Group) -> str:
    values = sorted({int(v) for v in group.values("epochs")})
    if not values:
        return DASH
    return str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"


def build_table(groups: list[Group]) -> tuple[list[str], list[Group]]:
    """Markdown table lines and the groups in table order (model/dataset, then mean accuracy, best first)."""
    stats = {id(g): mean_std(g.values("test_accuracy")) for g in groups}
    groups = sorted(groups, key=lambda g: (g.model, g.dataset, -stats[id(g)][0], g.label))
    best_fixed: dict[tuple[str, str], Group] = {}
    for g in groups:  # sorted by accuracy, so the first fixed one per model/dataset is the best
        if not g.learnable:
            best_fixed.setdefault((g.model, g.dataset), g)

    lines = [("| model | dataset | activation | kind | n | epochs | test acc. % (mean ± std) | best acc. % "
             "(mean ± std) | seconds / run | vs. best fixed |"),
             "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for g in groups:
        mean, std = stats[id(g)]
        best_mean, best_std = mean_std(g.values("best_test_accuracy"))
        seconds = g.values("seconds")
        ref = best_fixed.get((g.model, g.dataset))
        if ref is g:
            verdict = "**best fixed**"
        elif g.learnable and ref is not None and min(g.seeds, ref.seeds) < MIN_SEEDS_FOR_VERDICT:
            diff = mean - stats[id(ref)][0]
            verdict = (f"n too small ({100 * diff:+.2f} pp vs. {ref.label}; a verdict needs "
                       f"≥ {MIN_SEEDS_FOR_VERDICT} seeds in both rows)")
        elif g.learnable and ref is not None:
            ref_mean, ref_std = stats[id(ref)]
            diff = mean - ref_mean
            tol = max(std, ref_std)  # "within one std": the larger of the two seed spreads
            # Above by less than the seed spread is a match, not a win.
            if diff > tol:
                verdict = f"beats {ref.label} ({100 * diff:+.2f} pp)"
            elif abs(diff) <= tol:
                verdict = f"matches {ref.label} ({100 * diff:+.2f} pp, within 1 std)"
            else:
                verdict = f"below {ref.label} ({100 * diff:+.2f} pp)"
        elif g.learnable:
            verdict = "no fixed baseline"
        else:
            verdict = ""
        name = f"**{g.label}**" if ref is g else g.label
        lines.append(
            f"| {g.model} | {g.dataset} | {name} | {'learnable' if g.learnable else 'fixed'} | {len(g.runs)} | "
            f"{epochs_text(g)} | {fmt_pct(mean, std)} | {fmt_pct(best_mean, best_std)} | "
            f"{f'{statistics.fmean(seconds):.1f}' if seconds else DASH} | {verdict} |")
    return lines, groups


def synthetic_note(runs) -> list[str]:
    n = sum(1 for r in runs if r.summary.get("synthetic") is True)
    return [(f"**Note: {n} of these runs trained on generated data (--synthetic); their accuracies say nothing "
            "about the real data sets.**"), ""] if n else []


def write_markdown(out: Path, table: list[str], runs, incomplete, paths, plots_written: bool,
                   warnings: list[str], pruning: list[str] | None = None) -> str:
    devices = sorted({str(r.summary.get("device")) for r in runs if r.summary.get("device")})
    text = ["# Results", "",
            f"{len(runs)} completed run(s) from {', '.join(str(p) for p in paths)}"
            + (f"; device: {', '.join(devices)}" if devices else "") + ".", "",
            *synthetic_note(runs),
            *table, "",
            ("Test accuracy after the last epoch and best test accuracy over epochs, in %, mean ± sample standard "
            f"deviation (ddof=1; {DASH} for a single seed) over the n seeds. Rows: per model/dataset, by mean "
            "test accuracy. **best fixed**: the fixed activation with the highest mean; a learnable activation "
            "*beats* it when its mean is higher by more than one std, *matches* it when the means differ by at most "
            "one std (the larger of the two groups' std), else it is *below*; with fewer than "
            f"{MIN_SEEDS_FOR_VERDICT} seeds in either row no verdict is given (*n too small*), only the "
            "difference."), ""]
    text += pruning or []
    if warnings:
        text += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    if incomplete:
        text += ["## Incomplete runs", ""] + [f"- `{p}`: {why}" for p, why in incomplete] + [""]
    if plots_written:
        text += ["## Figures", "", "![test accuracy vs epoch](accuracy_curves.png)", "",
                 "![learned activations vs initialisation](activations.png)", ""]
        if pruning:
            text += ["![test accuracy vs fraction of filters pruned](pruning.png)", ""]
    else:
        text += ["(Plots not written: matplotlib is not installed.)", ""]
    content = "\n".join(text)
    tmp = out / "results.md.tmp"
    tmp.write_text(content)
    tmp.replace(out / "results.md")
    return content


# ------------------------------------------------------------------------------------------------
# Plots


def grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


def colors_for(plt, n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_mean_and_band(ax, xs, means, stds, g: Group, color, label: str) -> None:
    """One group's mean over seeds (solid for a learnable activation, dashed for a fixed one) and,
    where the seeds differ, its ±1 std band."""
    ax.plot(xs, means, "-" if g.learnable else "--", marker="o", markersize=3, color=color, label=label)
    if any(stds):
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=color, alpha=0.12, linewidth=0)


def plot_accuracy_curves(plt, groups: list[Group], path: Path) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    panels: dict[tuple[str, str], list[Group]] = {}
    for g in groups:  # groups arrive in table order: best first within each model/dataset
        panels.setdefault((g.model, g.dataset), []).append(g)
    rows, cols = grid(len(panels), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(8.4 * cols, 4.4 * rows), squeeze=False)
    for ax, ((model, dataset), members) in zip(axes.flat, panels.items()):
        colors = colors_for(plt, len(members))
        curves = [(color, g, accuracy_by_epoch(g)) for color, g in zip(colors, members)]
        curves = [(color, g, per_epoch) for color, g, per_epoch in curves if per_epoch]
        all_epochs = sorted({e for _, _, per_epoch in curves for e in per_epoch})
        # One epoch: a line through one point is a bare dot, and a ±std band has no width. Markers with
        # error bars instead, spread a little sideways so equal means do not hide each other.
        single = len(all_epochs) == 1
        for i, (color, g, per_epoch) in enumerate(curves):
            epochs = sorted(per_epoch)
            means = [statistics.fmean(per_epoch[e]) for e in epochs]
            stds = [statistics.stdev(per_epoch[e]) if len(per_epoch[e]) > 1 else 0.0 for e in epochs]
            label = f"{g.label} ({means[-1]:.2f}%, n={len(g.runs)})"
            if single:
                offset = (i - (len(curves) - 1) / 2) * min(0.08, 0.6 / len(curves))
                ax.errorbar([e + offset for e in epochs], means, yerr=stds if any(stds) else None,
                            fmt="o" if g.learnable else "s", markersize=7, capsize=3, color=color, label=label)
                continue
            plot_mean_and_band(ax, epochs, means, stds, g, color, label)
        ax.set_title(f"{model} / {dataset}: test accuracy\n(mean over seeds, ±1 std)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        if all_epochs:  # whole epochs only, with room for the markers at the ends
            ax.set_xlim(all_epochs[0] - 0.5, all_epochs[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(True, alpha=0.3)
        if curves:
            handles, labels = ax.get_legend_handles_labels()
            if single:
                handles += [Line2D([], [], color="gray", marker="o", linestyle=""),
                            Line2D([], [], color="gray", marker="s", linestyle="")]
                labels += ["(circle: learnable)", "(square: fixed)"]
            else:
                handles += [Line2D([], [], color="gray", linestyle="-"), Line2D([], [], color="gray", linestyle="--")]
                labels += ["(solid: learnable)", "(dashed: fixed)"]
            # Beside the panel: inside, it covers the best curves, which end where a corner legend sits.
            ax.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            ax.text(0.5, 0.5, "no metrics.csv rows", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_by_epoch(g: Group) -> dict[int, list[float]]:
    """epoch -> test accuracies (%) of the group's runs that reached it."""
    per_epoch: dict[int, list[float]] = {}
    for r in g.runs:
        for e, a in zip(r.epochs_curve, r.test_acc_curve):
            per_epoch.setdefault(e, []).append(100 * a)
    return per_epoch


def valid_curve(c) -> bool:
    if not isinstance(c, dict):
        return False
    x, y = c.get("x"), c.get("y")
    return isinstance(x, list) and isinstance(y, list) and len(x) == len(y) > 0


def init_curve(c) -> list | None:
    """y_init when it is there and matches x (a run resumed from an old checkpoint may lack it)."""
    y0 = c.get("y_init")
    return y0 if isinstance(y0, list) and len(y0) == len(c["x"]) else None


def input_histogram(c) -> tuple[list[float], list[float]] | None:
    """(edges, counts) of the slot's recorded inputs ("input_histogram": {"edges": [B + 1], "counts": [B]}),
    or None when the summary has none or it does not parse."""
    h = c.get("input_histogram")
    if not isinstance(h, dict):
        return None
    edges, counts = h.get("edges"), h.get("counts")
    if not (isinstance(edges, list) and isinstance(counts, list) and len(edges) == len(counts) + 1 > 1):
        return None
    if not all(is_number(v) for v in edges + counts) or sum(counts) <= 0:
        return None
    return edges, counts


def draw_input_histograms(ax, slots) -> int:
    """Each (colour, curve)'s input histogram as a shaded density on a second y axis, behind the curves.
    Returns how many were drawn."""
    drawn, top = 0, 0.0
    hax = None
    for color, c in slots:
        h = input_histogram(c)
        if h is None:
            continue
        edges, counts = h
        total = sum(counts)
        density = [n / total / (hi - lo) if hi > lo else 0.0 for n, lo, hi in zip(counts, edges, edges[1:])]
        if hax is None:
            hax = ax.twinx()
            hax.set_ylabel("input density", fontsize=7, color="0.45")
            hax.tick_params(labelsize=6, colors="0.45")
            ax.set_zorder(hax.get_zorder() + 1)  # curves above the shading
            ax.patch.set_visible(False)
        hax.stairs(density, edges, fill=True, color=color, alpha=0.18)
        drawn += 1
        top = max(top, max(density))
    if hax is not None and top > 0:
        hax.set_ylim(0, 2 * top)  # the lower half of the panel: the curves stay readable above
    return drawn


def robust_limits(values: list[float]) -> tuple[float, float] | None:
    """y-limits from the 1st..99th percentile: one pole-like spike should not flatten every other curve."""
    finite = sorted(v for v in values if isinstance(v, (int, float)) and math.isfinite(v))
    if not finite:
        return None
    lo, hi = finite[int(0.01 * (len(finite) - 1))], finite[int(0.99 * (len(finite) - 1))]
    pad = 0.08 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def plot_activations(plt, groups: list[Group], path: Path) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = []
    for g in groups:
        # One representative run per group (lowest seed): seeds differ little in shape, and overlaying
        # them would hide the learned-vs-init comparison.
        for r in sorted(g.runs, key=lambda r: (str(r.seed), str(r.path))):
            curves = [c for c in (r.summary.get("activation_curves") or []) if valid_curve(c)]
            if curves:
                panels.append((g, r, curves))
                break
    rows, cols = grid(max(1, len(panels)), 4)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.6 * cols, 6.4), 3.8 * rows + 0.4), squeeze=False)
    if not panels:
        ax = axes.flat[0]
        ax.text(0.5, 0.5, "no activation_curves in the summaries\n(fixed activations only?)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    any_histogram = False
    for ax, (g, r, curves) in zip(axes.flat, panels):
        shown = curves
        if len(curves) > MAX_SLOTS_PER_PANEL:  # evenly spaced slots, first and last included
            step = (len(curves) - 1) / (MAX_SLOTS_PER_PANEL - 1)
            shown = [curves[round(i * step)] for i in range(MAX_SLOTS_PER_PANEL)]
        colors = colors_for(plt, len(shown))
        values = []
        for color, c in zip(colors, shown):
            ax.plot(c["x"], c["y"], "-", color=color, linewidth=1.6, label=str(c.get("slot", "?")))
            values += c["y"]
        inits = [(color, c, init_curve(c)) for color, c in zip(colors, shown)]
        inits = [(color, c, y0) for color, c, y0 in inits if y0 is not None]
        # Slots that start as the same function would draw that one curve on top of itself, in the last
        # slot's colour: draw it once, black. Different starts keep their slot's colour.
        shared_init = len(inits) > 1 and all(y0 == inits[0][2] and c["x"] == inits[0][1]["x"] for _, c, y0 in inits)
        for color, c, y0 in inits[:1] if shared_init else inits:
            ax.plot(c["x"], y0, "--", color="black" if shared_init else color, linewidth=1.0, alpha=0.8, zorder=3)
            values += y0
        histograms = draw_input_histograms(ax, zip(colors, shown))
        any_histogram = any_histogram or bool(histograms)
        limits = robust_limits(values)
        if limits:
            ax.set_ylim(*limits)
        seed = f"seed {r.seed}" if r.seed is not None else r.path.name
        more = f", {len(shown)} of {len(curves)} slots" if len(shown) < len(curves) else ""
        ax.set_title(f"{g.model} / {g.dataset}: {g.label}\n({seed}{more})", fontsize=10)
        ax.set_xlabel("x")
        ax.set_ylabel("activation(x)")
        ax.axhline(0, color="black", linewidth=0.5, alpha=0.4)
        ax.axvline(0, color="black", linewidth=0.5, alpha=0.4)
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="gray", linestyle="-")]
        labels += ["learned"]
        if inits:
            handles.append(Line2D([], [], color="black" if shared_init else "gray", linestyle="--"))
            labels.append("initial (every slot)" if shared_init else "initial (slot's colour)")
        if histograms:
            handles.append(Patch(color="gray", alpha=0.3))
            labels.append("inputs (density)")
        ax.legend(handles, labels, fontsize=7, loc="upper left")
    for ax in list(axes.flat)[max(1, len(panels)):]:
        ax.set_visible(False)
    fig.suptitle("Learned activations (solid) vs initialisation (dashed)"
                 + (", input densities shaded" if any_histogram else ""), fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pruning_curve(g: Group) -> tuple[list[float], list[float], list[float]]:
    """(pruned %, mean test accuracy %, std) per round over the group's seeds, rounds every seed reached."""
    per_round: dict[int, list[tuple[float, float]]] = {}
    for r in g.runs:
        for rnd, (frac, acc) in r.pruning.items():
            per_round.setdefault(rnd, []).append((100 * frac, 100 * acc))
    xs, means, stds = [], [], []
    for rnd in sorted(per_round):
        pts = per_round[rnd]
        xs.append(statistics.fmean(p[0] for p in pts))
        accs = [p[1] for p in pts]
        means.append(statistics.fmean(accs))
        stds.append(statistics.stdev(accs) if len(accs) > 1 else 0.0)
    return xs, means, stds


def plot_pruning(plt, groups: list[Group], path: Path) -> None:
    """Test accuracy against the fraction of conv filters pruned (the PAU paper's Fig. 4), one panel per
    model/dataset, one line per activation (mean over seeds, ±1 std band)."""
    panels: dict[tuple[str, str], list[Group]] = {}
    for g in groups:
        if any(r.pruning for r in g.runs):
            panels.setdefault((g.model, g.dataset), []).append(g)
    rows, cols = grid(len(panels), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.4 * rows), squeeze=False)
    for ax, ((model, dataset), members) in zip(axes.flat, panels.items()):
        for color, g in zip(colors_for(plt, len(members)), members):
            xs, means, stds = pruning_curve(g)
            plot_mean_and_band(ax, xs, means, stds, g, color, f"{g.label} (n={len(g.runs)})")
        ax.set_title(f"{model} / {dataset}: filter pruning (mean over seeds)")
        ax.set_xlabel("conv filters pruned (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pruning_table(groups: list[Group]) -> list[str]:
    """Markdown rows: test accuracy per pruning round, mean ± std over seeds."""
    lines = []
    for g in groups:
        if not any(r.pruning for r in g.runs):
            continue
        xs, means, stds = pruning_curve(g)
        cells = [f"{x:.1f}%: {fmt_pct(m / 100, s / 100 if len(g.runs) > 1 else float('nan'))}"
                 for x, m, s in zip(xs, means, stds)]
        lines.append(f"| {g.model} | {g.dataset} | {g.label} | {len(g.runs)} | {' · '.join(cells)} |")
    if not lines:
        return []
    return ["## Filter pruning", "", "Test accuracy (%) after each round, by the fraction of conv filters pruned.",
            "", "| model | dataset | activation | n | pruned: accuracy |", "|---|---|---|---|---|"] + lines + [""]


def import_pyplot():
    """matplotlib.pyplot with the Agg backend (no display needed), or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", metavar="RUN_OR_SWEEP_DIR", help="searched recursively for summary.json")
    parser.add_argument("--output", required=True, help="directory for results.md and the plots")
    parser.add_argument("--no-plots", action="store_true", help="write only results.md")
    args = parser.parse_args(argv)

    paths = [Path(d) for d in args.dirs]
    for p in paths:
        if not p.is_dir():
            print(f"report.py: error: {p}: no such directory", file=sys.stderr)
            return 2
    runs, incomplete = collect(paths)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    groups = group_runs(runs)
    table, groups = build_table(groups)
    plt = None if args.no_plots else import_pyplot()
    if plt is None and not args.no_plots:
        print("report.py: matplotlib is not installed, so accuracy_curves.png and activations.png are not written "
              "(install it with `python3 -m pip install matplotlib`; results.md is written)", file=sys.stderr)
    pruned = any(r.pruning for r in runs)
    if plt is not None and runs:
        plot_accuracy_curves(plt, groups, out / "accuracy_curves.png")
        plot_activations(plt, groups, out / "activations.png")
        if pruned:
            plot_pruning(plt, groups, out / "pruning.png")
    warnings = duplicate_seeds(groups)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    write_markdown(out, table, runs, incomplete, paths, plots_written=plt is not None and bool(runs),
                   warnings=warnings, pruning=pruning_table(groups))

    if runs:
        print("\n".join(table))
    if incomplete:
        print(f"\n{len(incomplete)} incomplete run(s):")
        for p, why in incomplete:
            print(f"  {p}: {why}")
    if not runs:
        print(f"report.py: no completed run (summary.json) below {', '.join(map(str, paths))}", file=sys.stderr)
        return 1
    print(f"\nwrote {out / 'results.md'}" + ("" if plt is None else
          f", {out / 'accuracy_curves.png'}, {out / 'activations.png'}"
          + (f", {out / 'pruning.png'}" if pruned else "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
