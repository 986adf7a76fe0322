"""torch_rational.monitor: snapshots and the evolution GIF, the TensorBoard hook, best_fit."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

import torch_rational
from reference import rational_reference
from torch_rational import PAU, monitor, record_inputs

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


def _pau(init: str = "tanh", num_groups: int = 1) -> PAU:
    act = PAU(init=init, num_groups=num_groups)
    torch_rational.remember_init(act)
    return act


def _identity_pau() -> PAU:
    """P(x) / Q(x) = x / 1 exactly, by construction."""
    act = PAU()
    with torch.no_grad():
        act.numerator.zero_()
        act.numerator[0, 1] = 1.0
        act.denominator.zero_()
    return act


def _expected_curve(act: PAU, x: torch.Tensor) -> torch.Tensor:
    """(N, G) float64 curves of every group, from the formula."""
    g = act.numerator.shape[0]
    xx = x.to(torch.float64).reshape(-1, 1).expand(-1, g)
    return rational_reference(xx, act.numerator.detach(), act.denominator.detach(), act.version, act.basis, 1)


# ------------------------------------------------------------------------------------------------
# Snapshots and the GIF


def test_snapshots_hold_the_curves_at_capture_time():
    act = _pau(num_groups=2)
    snaps = monitor.Snapshots(act, range=(-3, 3), num_points=7)
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    before = _expected_curve(act, x)
    snaps.capture(10)
    with torch.no_grad():
        act.numerator.mul_(1.5)
    snaps.capture()
    assert [s.step for s in snaps.snapshots] == [10, 1] and len(snaps) == 2
    torch.testing.assert_close(snaps.snapshots[0].curves[""], before)  # not changed by the later update
    torch.testing.assert_close(snaps.snapshots[1].curves[""], _expected_curve(act, x))
    init_curve, label = snaps.init[""]
    torch.testing.assert_close(init_curve, before)
    assert label == "init"


def test_snapshots_copy_the_recorded_histogram():
    act = _pau()
    snaps = monitor.Snapshots(act)
    x = torch.tensor([-4.5, -0.2, 0.3, 0.4, 7.0])
    with record_inputs(act, range=(-5, 5), bins=10), torch.no_grad():
        act(x)
    snaps.capture()
    with record_inputs(act, range=(-5, 5), bins=10, reset=False), torch.no_grad():  # adds to the same histogram
        act(torch.zeros(3))
    snaps.capture()
    first, second = (s.histograms[""] for s in snaps.snapshots)
    expected = torch.zeros(10, dtype=torch.float64)
    for v in (-4.5, -0.2, 0.3, 0.4):
        expected[math.floor((v + 5) / 1.0)] += 1
    torch.testing.assert_close(first.counts, expected, rtol=0, atol=0)
    assert first.total == 5 and int(first.above) == 1
    assert second.total == 8 and float(second.counts[5]) == expected[5] + 3


def test_evolution_gif_has_one_frame_per_snapshot(tmp_path):
    pytest.importorskip("matplotlib")
    Image = pytest.importorskip("PIL.Image")
    torch.manual_seed(0)
    model = torch_rational.replace_activations(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh()),
                                               verbose=False)
    snaps = monitor.Snapshots(model)
    for step in range(4):
        with torch.no_grad():
            for p in torch_rational.activation_parameters(model):
                p.add_(0.2 * torch.randn_like(p))
        with record_inputs(model), torch.no_grad():
            model(torch.randn(32, 3))
        snaps.capture(step)
    path = snaps.save_gif(tmp_path / "sub" / "evolution.gif", overlay=("relu",))
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 4
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(torch.frombuffer(bytearray(im.convert("L").tobytes()), dtype=torch.uint8))
    assert all(f.shape == frames[0].shape for f in frames)
    assert all(not torch.equal(frames[i], frames[i + 1]) for i in range(3)), "the curves moved between frames"


def test_gif_errors(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    snaps = monitor.Snapshots(_pau())
    with pytest.raises(ValueError, match="no snapshot"):
        snaps.save_gif(tmp_path / "a.gif")
    snaps.capture()
    with pytest.raises(ValueError, match="path must end in .gif"):
        snaps.save_gif(tmp_path / "a.png")
    with pytest.raises(ValueError, match="fps"):
        snaps.save_gif(tmp_path / "a.gif", fps=0)
    with pytest.raises(ValueError, match="overlay.*'nope'"):
        snaps.save_gif(tmp_path / "a.gif", overlay=("nope",))
    from matplotlib.animation import PillowWriter

    monkeypatch.setattr(PillowWriter, "isAvailable", classmethod(lambda cls: False))
    with pytest.raises(ImportError, match="pip install pillow"):
        snaps.save_gif(tmp_path / "a.gif")
    with pytest.raises(ValueError, match="no torch_rational activation"):
        monitor.Snapshots(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="range"):
        monitor.Snapshots(_pau(), range=(1, 1))


# ------------------------------------------------------------------------------------------------
# TensorBoard


class FakeWriter:
    """Records the calls a SummaryWriter would get."""

    def __init__(self):
        self.calls = []

    def add_figure(self, tag, figure, global_step=None, close=True):
        self.calls.append(("figure", tag, figure, global_step))

    def add_histogram_raw(self, tag, **kwargs):
        self.calls.append(("histogram", tag, kwargs, kwargs.get("global_step")))


def test_tensorboard_hook_logs_curves_and_input_histograms():
    pytest.importorskip("matplotlib")
    torch.manual_seed(0)
    model = torch_rational.replace_activations(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh()),
                                               verbose=False)
    x = torch.randn(40, 3) * 2
    with record_inputs(model, range=(-4, 4), bins=16), torch.no_grad():
        model(x)
        pre = model[0](x)
    writer = FakeWriter()
    hook = monitor.TensorBoardHook(model, writer, every=5, num_points=9)
    assert [hook(step) for step in range(11)] == [s % 5 == 0 for s in range(11)]
    figures = [c for c in writer.calls if c[0] == "figure"]
    assert [(c[1], c[3]) for c in figures] == [(f"activations/{n}", s) for s in (0, 5, 10) for n in ("1", "3")]
    # The figure's learned line is the module's curve (from the formula) on the recorded range.
    fig = figures[0][2]
    learned = next(line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "learned")
    grid = torch.linspace(-4, 4, 9, dtype=torch.float64)
    torch.testing.assert_close(torch.as_tensor(learned.get_ydata()), _expected_curve(model[1], grid).reshape(-1))
    hists = {(c[1], c[3]): c[2] for c in writer.calls if c[0] == "histogram"}
    assert sorted(hists) == sorted((f"activations/{n}/inputs", s) for s in (0, 5, 10) for n in ("1", "3"))
    raw = hists[("activations/1/inputs", 0)]
    v = pre.reshape(-1).double()
    inside = (v >= -4) & (v <= 4)
    expected = torch.bincount(((v[inside] + 4) / 0.5).floor().clamp(max=15).long(), minlength=16).double()
    assert raw["bucket_counts"] == expected.tolist()
    assert raw["bucket_limits"] == pytest.approx([-4 + 0.5 * (i + 1) for i in range(16)])
    assert raw["num"] == int(inside.sum())
    centres = torch.tensor([-4 + 0.5 * (i + 0.5) for i in range(16)], dtype=torch.float64)
    assert raw["sum"] == pytest.approx(float((expected * centres).sum()))
    assert raw["sum_squares"] == pytest.approx(float((expected * centres**2).sum()))
    assert raw["min"] <= float(v[inside].min()) and raw["max"] >= float(v[inside].max())
    hook.close()  # the writer passed in is the caller's: not closed, no error


def test_tensorboard_hook_errors():
    with pytest.raises(TypeError, match="writer must be a SummaryWriter"):
        monitor.TensorBoardHook(_pau(), object())
    with pytest.raises(ValueError, match="every"):
        monitor.TensorBoardHook(_pau(), FakeWriter(), every=0)
    with pytest.raises(ValueError, match="overlay"):
        monitor.TensorBoardHook(_pau(), FakeWriter(), overlay="nope")


@pytest.mark.skipif(HAS_TENSORBOARD, reason="tensorboard is installed: the event-file test runs instead")
def test_tensorboard_hook_without_tensorboard_says_what_to_install(tmp_path):
    with pytest.raises(ImportError, match="pip install tensorboard"):
        monitor.TensorBoardHook(_pau(), tmp_path / "tb")


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed")
def test_tensorboard_hook_writes_a_readable_event_file(tmp_path):
    pytest.importorskip("matplotlib")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    act = _pau()
    with record_inputs(act), torch.no_grad():
        act(torch.randn(100))
    hook = monitor.TensorBoardHook(act, tmp_path / "tb")
    hook(3)
    hook.close()
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    assert events.Tags()["images"] == ["activations/PAU"]
    assert [e.step for e in events.Images("activations/PAU")] == [3]
    assert events.Histograms("activations/PAU/inputs")[0].histogram_value.num == 100


# ------------------------------------------------------------------------------------------------
# best_fit


@pytest.mark.parametrize("init", ["tanh", "sigmoid", "gelu", "elu"])
def test_best_fit_names_the_init(init):
    assert monitor.best_fit(PAU(init=init), range=(-3, 3)).name == init


def test_best_fit_distances_are_the_rms_from_the_formula():
    act = _pau("tanh")
    x = torch.linspace(-2, 2, 41, dtype=torch.float64)
    y = _expected_curve(act, x).reshape(-1)
    result = monitor.best_fit(act, ("tanh", "relu", "sigmoid"), range=(-2, 2), num_points=41)
    expected = {"tanh": torch.tanh(x), "relu": x.clamp(min=0), "sigmoid": 1 / (1 + torch.exp(-x))}
    for name, f in expected.items():
        assert result.distances[name] == pytest.approx(float(((y - f) ** 2).mean().sqrt()), rel=1e-9)
    assert list(result.distances) == sorted(result.distances, key=result.distances.get)
    assert result.name == "tanh" and result.distance == result.distances["tanh"] and not result.weighted


def test_best_fit_weights_by_where_the_inputs_were():
    """y = x exactly. Inputs only on x > 0: relu equals it there (distance 0). Inputs only near 0:
    tanh(x) ~ x there, relu is off by |x| on the negative side. Unweighted, on [-5, 5]: identity."""
    act = _identity_pau()
    candidates = ("relu", "tanh", "identity")
    assert monitor.best_fit(act, candidates).name == "identity"
    candidates = ("relu", "tanh")
    with record_inputs(act, range=(-5, 5), bins=20), torch.no_grad():
        act(torch.linspace(0.6, 4.9, 50))
    fit = monitor.best_fit(act, candidates)
    assert fit.weighted and fit.name == "relu" and fit.distance == pytest.approx(0.0, abs=1e-12)
    with record_inputs(act, range=(-5, 5), bins=20), torch.no_grad():
        act(torch.linspace(-0.4, 0.4, 50))
    fit = monitor.best_fit(act, candidates, num_points=800)  # no grid point on a bin edge
    assert fit.name == "tanh"
    # The weighted distance from the formula: points in bins 9 and 10 ([-0.5, 0.5)), weights = counts.
    x = torch.linspace(-5, 5, 800, dtype=torch.float64)
    w = ((x >= -0.5) & (x < 0.5)).double() * 25  # 25 inputs in each of the two bins
    for name, f in (("tanh", torch.tanh(x)), ("relu", x.clamp(min=0))):
        assert fit.distances[name] == pytest.approx(float(((x - f) ** 2 * w).sum() / w.sum()) ** 0.5, rel=1e-9)


def test_best_fit_groups():
    act = _pau("tanh", num_groups=2)
    with torch.no_grad():
        act.numerator[1].zero_()
        act.numerator[1, 1] = 1.0
        act.denominator[1].zero_()  # group 1: exactly x
    assert monitor.best_fit(act, ("tanh", "identity"), group=0).name == "tanh"
    fit1 = monitor.best_fit(act, ("tanh", "identity"), group=1)
    assert fit1.name == "identity" and fit1.distance == pytest.approx(0.0, abs=1e-12)
    both = monitor.best_fit(act, ("tanh", "identity"))
    zero = monitor.best_fit(act, ("tanh", "identity"), group=0)
    for name in ("tanh", "identity"):  # RMS over both groups' curves
        expected = math.sqrt((zero.distances[name] ** 2 + fit1.distances[name] ** 2) / 2)
        assert both.distances[name] == pytest.approx(expected, rel=1e-9)


def test_best_fit_errors():
    with pytest.raises(ValueError, match="one torch_rational activation"):
        monitor.best_fit(nn.Sequential(PAU(), PAU()))
    with pytest.raises(ValueError, match="candidates.*'nope'"):
        monitor.best_fit(PAU(), ("relu", "nope"))
    with pytest.raises(ValueError, match="candidates is empty"):
        monitor.best_fit(PAU(), ())
    with pytest.raises(ValueError, match="group"):
        monitor.best_fit(PAU(num_groups=2), group=2)
    act = PAU()
    with record_inputs(act, range=(-5, 5)), torch.no_grad():
        act(torch.full((4,), 4.5))
    with pytest.raises(ValueError, match="no recorded input falls in range"):
        monitor.best_fit(act, range=(-1, 1))


@pytest.mark.parametrize("family", ["ERA", "PWLU"])
def test_best_fit_other_families(family):
    act = getattr(torch_rational, family)(init="tanh")
    assert monitor.best_fit(act, range=(-3, 3)).name == "tanh"
