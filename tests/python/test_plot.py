"""torch_rational.plot, remember_init and the opt-in input histograms."""

from __future__ import annotations

import builtins
import copy
import sys

import pytest
import torch
from torch import nn

import torch_rational
from torch_rational import PAU, record_inputs, replace_activations

plot_module = sys.modules["torch_rational.plot"]  # the attribute `torch_rational.plot` is the function


def _model():
    torch.manual_seed(0)
    return replace_activations(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)), verbose=False)


def test_input_histogram_counts_what_the_activation_saw():
    model = _model()
    x = torch.randn(50, 4) * 3
    with torch.no_grad():
        pre1 = model[0](x)
        pre2 = model[2](model[1](pre1))
    with record_inputs(model, range=(-2.0, 2.0), bins=8) as rec, torch.no_grad():
        model(x)
        model(x)
    assert sorted(rec.histograms) == ["1", "3"]
    for name, pre in (("1", pre1), ("3", pre2)):
        h = rec.histograms[name]
        v = pre.reshape(-1).double()
        assert h.total == 2 * v.numel()
        # Expected counts per bin, computed here: bins [lo + i w, lo + (i+1) w), the last one closed.
        idx = ((v + 2.0) / 0.5).floor().clamp(max=7)
        inside = (v >= -2.0) & (v <= 2.0)
        expected = torch.bincount(idx[inside].long(), minlength=8).double() * 2
        torch.testing.assert_close(h.counts, expected, rtol=0, atol=0)
        assert int(h.below) == 2 * int((v < -2).sum()) and int(h.above) == 2 * int((v > 2).sum())
    # Hooks are gone after the block: nothing more is recorded.
    with torch.no_grad():
        model(x)
    assert rec.histograms["1"].total == 2 * pre1.numel()
    assert not model[1]._forward_pre_hooks


def test_recording_is_off_by_default():
    model = _model()
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_plot_model_png_and_svg(tmp_path):
    pytest.importorskip("matplotlib")
    model = _model()
    with torch.no_grad():
        for p in torch_rational.activation_parameters(model):
            p.add_(0.05 * torch.randn_like(p))  # "trained": learned curve differs from init
    with record_inputs(model), torch.no_grad():
        model(torch.randn(64, 4))
    fig = torch_rational.plot(model, tmp_path / "acts.png", title="two activations")
    data = (tmp_path / "acts.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any("was ReLU" in t for t in titles) and any("was Tanh" in t for t in titles)
    labels = {line.get_label() for ax in fig.axes for line in ax.get_lines()}
    assert {"learned", "init"} <= labels
    torch_rational.plot(model[1], tmp_path / "one.svg", histogram=False, range=(-4, 4))
    assert b"<svg" in (tmp_path / "one.svg").read_bytes()[:2000]


def test_plot_curves_are_the_module_and_its_init():
    pytest.importorskip("matplotlib")
    act = PAU(init="tanh", num_groups=2)
    torch_rational.remember_init(act)
    with torch.no_grad():
        act.numerator[1].mul_(2.0)  # group 1 learned twice its init
    fig = torch_rational.plot(act, range=(-2, 2), num_points=5, histogram=False)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    x = torch.linspace(-2, 2, 5, dtype=torch.float64)
    init = torch.as_tensor(lines["init"].get_ydata())
    learned = [torch.as_tensor(line.get_ydata()) for line in fig.axes[0].get_lines()
               if line.get_label() != "init" and len(line.get_ydata()) == 5]
    assert len(learned) == 2
    torch.testing.assert_close(learned[1], 2.0 * learned[0])  # P doubled, Q unchanged
    torch.testing.assert_close(learned[0], init)
    # The init of PAU(init="tanh") is close to tanh itself (a float64 formula, not the package's).
    torch.testing.assert_close(init, (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1), rtol=0, atol=2e-3)


def test_plot_without_remembered_init_uses_the_init_function():
    pytest.importorskip("matplotlib")
    fig = torch_rational.plot(PAU(init="relu"), range=(-1, 1), num_points=3, histogram=False)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "relu (init function)" in labels


def test_plot_errors(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="no torch_rational activation"):
        torch_rational.plot(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="path must end in"):
        torch_rational.plot(PAU(), tmp_path / "x.txt")
    with pytest.raises(ValueError, match="range"):
        torch_rational.plot(PAU(), range=(1, -1))
    with pytest.raises(ValueError, match="range"):
        record_inputs(PAU(), range=(0, 0))
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match="needs matplotlib"):
        torch_rational.plot(PAU())


def test_plot_does_not_change_the_module():
    pytest.importorskip("matplotlib")
    model = _model().train()
    before = copy.deepcopy(model.state_dict())
    with record_inputs(model) as rec:
        torch_rational.plot(model, histogram=True)
    assert rec.histograms["1"].total == 0, "plotting must not record its own inputs"
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert plot_module.evaluate_curve(model[1], torch.zeros(3)).shape == (3, 1)


def _legend_texts(ax) -> list:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_plot_overlays_named_functions():
    pytest.importorskip("matplotlib")
    fig = torch_rational.plot(PAU(init="tanh"), range=(-3, 3), num_points=13, histogram=False, overlay=("relu", "gelu"))
    ax = fig.axes[0]
    assert _legend_texts(ax) == ["learned", "tanh (init function)", "relu", "gelu"]
    lines = {line.get_label(): line for line in ax.get_lines()}
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = {"relu": x.clamp(min=0), "gelu": 0.5 * x * (1 + torch.erf(x / 2**0.5))}
    for name, y in expected.items():
        assert lines[name].get_linestyle() == ":"
        torch.testing.assert_close(torch.as_tensor(lines[name].get_ydata()), y)
    assert lines["relu"].get_color() != lines["gelu"].get_color()
    fig = torch_rational.plot(PAU(), histogram=False, overlay="swish")  # one name is a tuple of one
    assert _legend_texts(fig.axes[0])[-1] == "swish"
    with pytest.raises(ValueError, match="overlay.*'nope'"):
        torch_rational.plot(PAU(), overlay=("relu", "nope"))
    with pytest.raises(TypeError, match="overlay"):
        torch_rational.plot(PAU(), overlay=3)
    with pytest.raises(TypeError, match="overlay"):
        torch_rational.plot(PAU(), overlay=("relu", None))


def test_grouped_legend_labels_each_group_once_and_the_init_once():
    pytest.importorskip("matplotlib")
    act = PAU(init="leaky_relu", num_groups=3)
    torch_rational.remember_init(act)
    fig = torch_rational.plot(act, histogram=False)
    assert _legend_texts(fig.axes[0]) == ["group 0", "group 1", "group 2", "init"]
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1, "an init shared by every group is drawn once"
    colors = [line.get_color() for line in fig.axes[0].get_lines() if line.get_label().startswith("group")]
    assert len(set(colors)) == 3

    # Groups that start apart: each init is drawn, the legend still says "init" once.
    with torch.no_grad():
        act.numerator[1].mul_(2.0)
    torch_rational.remember_init(act)
    fig = torch_rational.plot(act, histogram=False)
    assert _legend_texts(fig.axes[0]).count("init") == 1
    assert len([line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]) == 3

    many = PAU(num_groups=12)
    torch_rational.remember_init(many)
    fig = torch_rational.plot(many, histogram=False)
    assert _legend_texts(fig.axes[0]) == ["learned (12 groups)", "init"]
