"""replace_activations, the torch.fx rewrite of functional activations, and the optimizer groups.

Initialised activations are compared with float64 formulas of the functions they replace (written
here, not taken from torch_rational), within the fit error of a (5,4) rational on [-3, 3].
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_rational
from torch_rational import PAU, Rational, replace_activations, replace_functional_activations

@pytest.fixture(autouse=True)
def _one_thread(default_threads):
    # Some cases fit on the fly; the fitter's many small parallel steps slow down by an order of
    # magnitude on a machine whose cores are shared, and gain nothing from threads at this size.
    torch.set_num_threads(1)


GRID = torch.linspace(-3.0, 3.0, 601, dtype=torch.float64)


def _leaky(x, s):
    return torch.where(x >= 0, x, s * x)


def _elu(x, alpha):
    return torch.where(x > 0, x, alpha * (torch.exp(x) - 1.0))


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


# (module, float64 formula, allowed max |error| on [-3, 3]: a (5,4) rational's fit error with margin)
CASES = {
    "relu": (nn.ReLU(), lambda x: x.clamp_min(0), 0.03),
    "leaky_relu_0.2": (nn.LeakyReLU(0.2), lambda x: _leaky(x, 0.2), 0.03),
    "leaky_relu_default": (nn.LeakyReLU(), lambda x: _leaky(x, 0.01), 0.03),
    "tanh": (nn.Tanh(), lambda x: (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1), 1e-3),
    "sigmoid": (nn.Sigmoid(), lambda x: 1.0 / (1.0 + torch.exp(-x)), 1e-3),
    "silu": (nn.SiLU(), lambda x: x / (1.0 + torch.exp(-x)), 1e-3),
    "elu_0.5": (nn.ELU(alpha=0.5), lambda x: _elu(x, 0.5), 0.03),  # no name: fitted on the fly
    "gelu_tanh": (nn.GELU(approximate="tanh"), _gelu_tanh, 1e-2),  # no name: fitted on the fly
}


def _max_error(act, formula):
    with torch.no_grad():
        y = act.to(torch.float64)(GRID.clone())
    return float((y - formula(GRID)).abs().max())


@pytest.mark.parametrize("case", list(CASES))
def test_default_is_pau_fitted_to_the_replaced_function(case):
    module, formula, tol = CASES[case]
    act = replace_activations(copy.deepcopy(module), verbose=False)
    assert type(act) is PAU
    err = _max_error(act, formula)
    assert err <= tol, f"{case}: max |PAU - f| on [-3, 3] = {err:.3g} > {tol}"
    # ... and the init is not trivially close to something else (the test can fail).
    assert _max_error(act, lambda x: x) > 0.05


def _model():
    shared = nn.ReLU()
    return nn.Sequential(
        nn.Linear(4, 8), shared,
        nn.Sequential(nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.ModuleList([nn.Tanh(), shared])),
        nn.ModuleDict({"a": nn.GELU(), "b": nn.Linear(8, 8)}),
        nn.Dropout(0.0), nn.Softmax(dim=-1),
    )


def test_walks_nested_containers_keeps_sharing_and_counts(capsys):
    model = _model()
    found = torch_rational.find_activations(model)
    assert [n for n, _ in found] == ["1", "2.1", "2.2.0", "2.2.1", "3.a"]  # shared ReLU at both places
    out = replace_activations(model)
    assert out is model
    printed = capsys.readouterr().out
    assert "replaced 5 activation module(s) with PAU" in printed  # shared ReLU counted per place
    assert isinstance(model[1], PAU) and model[2][2][1] is model[1], "a shared module must stay shared"
    assert model[1].init == "relu" and model[2][1].init == "leaky_relu_0.2"
    assert model[2][2][0].init == "tanh" and model[3]["a"].init == "gelu"
    assert isinstance(model[4], nn.Dropout) and isinstance(model[5], nn.Softmax)  # not activations we replace
    assert len(torch_rational.activation_modules(model)) == 4
    # Nothing left to replace, and a second call says so.
    with pytest.warns(UserWarning, match="no activation module was replaced"):
        replace_activations(model, verbose=False)


def test_not_inplace_leaves_the_model_alone():
    model = _model()
    new = replace_activations(model, inplace=False, verbose=False)
    assert new is not model and isinstance(model[1], nn.ReLU) and isinstance(new[1], PAU)


def test_model_that_is_an_activation_and_targets():
    assert isinstance(replace_activations(nn.SiLU(), verbose=False), PAU)
    model = nn.Sequential(nn.ReLU(), nn.Tanh(), nn.Softsign())
    replace_activations(model, targets=(nn.Tanh, nn.Softsign), verbose=False)
    assert isinstance(model[0], nn.ReLU) and isinstance(model[1], PAU) and isinstance(model[2], PAU)
    # Softsign has no name: fitted to the module itself, x / (1 + |x|).
    assert _max_error(model[2], lambda x: x / (1 + x.abs())) < 1e-2
    replace_activations(model, targets=nn.ReLU, verbose=False)  # a single type works too
    assert isinstance(model[0], PAU)


def test_replacements_follow_the_model_dtype():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).to(torch.float64)
    replace_activations(model, verbose=False)
    assert model[1].numerator.dtype == torch.float64


@pytest.mark.parametrize("factory,cls,basis", [
    ("pau", torch_rational.PAU, "power"), ("RPAU", torch_rational.RPAU, "power"),
    ("hp2", torch_rational.HP2, "hermite_e"), (torch_rational.OPAU, torch_rational.OPAU, "chebyshev_t"),
])
def test_factory_names_and_classes(factory, cls, basis):
    model = replace_activations(nn.Sequential(nn.Tanh()), factory, verbose=False)
    act = model[0]
    assert type(act) is cls and act.basis == basis and act.init == "tanh"
    assert _max_error(act.eval(), torch.tanh) < 2e-2  # (5,4) fit errors differ by basis


def test_factory_kwargs_and_callable():
    model = replace_activations(nn.Sequential(nn.ReLU()), degrees=(3, 2), version="B", verbose=False)
    assert model[0].degrees == (3, 2) and model[0].version == "B"
    seen = []

    def factory(original):
        seen.append(type(original))
        return None if isinstance(original, nn.Tanh) else Rational((5, 4), init="gelu")

    model = replace_activations(nn.Sequential(nn.ReLU(), nn.Tanh()), factory, verbose=False)
    assert seen == [nn.ReLU, nn.Tanh]
    assert isinstance(model[0], Rational) and model[0].init == "gelu" and isinstance(model[1], nn.Tanh)


def test_factory_errors_name_the_argument():
    with pytest.raises(ValueError, match="factory 'nope'"):
        replace_activations(nn.ReLU(), "nope")
    with pytest.raises(TypeError, match="factory"):
        replace_activations(nn.ReLU(), 3)
    with pytest.raises(TypeError, match="factory returned"):
        replace_activations(nn.ReLU(), lambda m: 3)
    with pytest.raises(TypeError, match="targets"):
        replace_activations(nn.ReLU(), targets=("ReLU",))


@pytest.mark.parametrize("name", ["ERA", "PWLU"])
def test_optional_families_by_name(name):
    if not hasattr(torch_rational, name):
        with pytest.raises(ValueError, match="not in this build"):
            replace_activations(nn.ReLU(), name.lower())
        pytest.skip(f"torch_rational.{name} is not in this build")
    model = replace_activations(nn.Sequential(nn.Linear(4, 4), nn.Tanh()), name.lower(), verbose=False)
    assert type(model[1]) is getattr(torch_rational, name)
    y = model(torch.randn(3, 4))
    assert y.shape == (3, 4) and torch.isfinite(y).all()
    assert torch_rational.activation_parameters(model)
    assert torch_rational.activation_modules(model) == [("1", model[1])]
    # ELU(alpha=0.5) has no name: these families, too, start as the replaced function itself (ERA
    # fits it, PWLU keeps it), without a warning; init names the replaced module.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        act = replace_activations(nn.ELU(alpha=0.5), name.lower(), verbose=False)
    assert type(act) is getattr(torch_rational, name)
    assert act.init == "ELU(alpha=0.5)"
    assert _max_error(act.eval(), lambda x: _elu(x, 0.5)) < 0.05  # ERA n = 1: a fit error of 0.04
    assert _max_error(act, lambda x: _elu(x, 1.0)) > 0.1  # the closest named function would fail


def test_pwlu_replacing_an_unnamed_function_passes_gradients_while_collecting():
    if not hasattr(torch_rational, "PWLU"):
        pytest.skip("torch_rational.PWLU is not in this build")
    act = replace_activations(nn.ELU(alpha=0.5), "pwlu", verbose=False).train()
    x = torch.randn(64, 4, requires_grad=True)
    y = act(x)  # the statistics phase: the replaced function itself, in x's dtype, differentiable
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, _elu(x.detach(), 0.5))
    y.sum().backward()
    xd = x.detach()
    torch.testing.assert_close(x.grad, torch.where(xd > 0, torch.ones_like(xd), 0.5 * torch.exp(xd)))


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.SiLU()

    def forward(self, x):
        x = F.leaky_relu(self.lin(x), 0.2)
        x = torch.tanh(x) + x.sigmoid() + F.relu(x, inplace=False)
        return self.act(F.elu(x, alpha=1.0))


def test_fx_rewrite_of_functional_calls():
    torch.manual_seed(0)
    model = _Functional()
    # Inputs that keep every activation's input inside the [-3, 3] range the inits are fitted on
    # (outside it a rational approximation may drift; unseeded, this test failed now and then).
    x = torch.randn(5, 4, dtype=torch.float64) * 0.5
    model64 = copy.deepcopy(model).to(torch.float64)
    with torch.no_grad():
        expected = model64(x)
    gm = replace_functional_activations(model, verbose=False)
    assert isinstance(model.act, nn.SiLU), "the original model is not modified"
    inits = sorted(m.init for _, m in torch_rational.activation_modules(gm))
    assert inits == ["elu", "leaky_relu_0.2", "relu", "sigmoid", "swish", "tanh"]
    code = gm.code
    for fn in ("leaky_relu", "torch.tanh", "sigmoid", "relu", "elu"):
        assert fn + "(" not in code, f"{fn} still called in\n{code}"
    # Every activation approximates the function it replaced: the whole model stays close.
    with torch.no_grad():
        got = gm.to(torch.float64)(x)
    assert (got - expected).abs().max() < 0.1
    # Only module replacement leaves the functional calls in place (what the docs warn about).
    plain = replace_activations(_Functional(), verbose=False)
    assert len(torch_rational.activation_modules(plain)) == 1


class _InPlace(nn.Module):
    def forward(self, x):
        y = x * 2
        z = y.relu_()  # y is used again below: the mutation matters
        w = F.relu(x * 3, inplace=True)  # only this call uses its input: safe to replace
        return z + y + w


def test_fx_rewrite_keeps_in_place_calls_whose_input_is_reused():
    with pytest.warns(UserWarning, match="in-place relu_"):
        gm = replace_functional_activations(_InPlace(), verbose=False)
    assert [m.init for _, m in torch_rational.activation_modules(gm)] == ["relu"]
    assert "relu_()" in gm.code
    x = torch.linspace(-1, 1, 51, dtype=torch.float64)  # 3x stays in [-3, 3], where the PAU fits relu
    with torch.no_grad():
        got = gm.to(torch.float64)(x.clone())
    expected = 2 * (2 * x).clamp_min(0) + (3 * x).clamp_min(0)  # z and y are both relu(2x)
    assert (got - expected).abs().max() < 0.05


def test_param_groups():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh())
    replace_activations(model, verbose=False)
    acts = torch_rational.activation_parameters(model)
    assert [p.shape for p in acts] == [(1, 6), (1, 4), (1, 6), (1, 4)]
    groups = torch_rational.param_groups(model, lr=0.01, weight_decay=0.0)
    assert len(groups) == 2 and groups[1]["lr"] == 0.01 and groups[1]["weight_decay"] == 0.0
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()), "every parameter exactly once"
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=1e-4)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == 0.01
    plain = nn.Linear(2, 2)
    groups = torch_rational.param_groups(plain)
    assert len(groups) == 1 and len(groups[0]["params"]) == 2  # no empty activation group


# ------------------------------------------------------------------------------------------------
# Activations of other libraries: matched by alias or by what they compute (timm's GELU is its own
# nn.Module, not a subclass of nn.GELU). These classes stand in for such a library's.


class LibGELU(nn.Module):
    """Like timm.layers.activations.GELU: computes F.gelu without being an nn.GELU."""

    def forward(self, x):
        return F.gelu(x)


class LibLeaky(nn.Module):
    def forward(self, x):
        return torch.where(x >= 0, x, 0.2 * x)


class LibQuickGELU(nn.Module):
    """x * sigmoid(1.702 x): a function without a name."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class LibIdentity(nn.Module):
    def forward(self, x):
        return x


class LibScaledReLU(nn.Module):
    """Has a parameter: not probed (only parameter-free leaves are found by value)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x.clamp_min(0)


def _gelu(x):
    return 0.5 * x * (1.0 + torch.special.erf(x / math.sqrt(2.0)))


def _quick_gelu(x):
    return x / (1.0 + torch.exp(-1.702 * x))


def test_other_library_activations_are_found_by_what_they_compute():
    model = nn.Sequential(nn.Linear(4, 4), LibGELU(), LibLeaky(), LibIdentity(), LibScaledReLU(), nn.ReLU())
    assert [n for n, _ in torch_rational.find_activations(model)] == ["1", "2", "5"]
    replace_activations(model, verbose=False)
    assert type(model[1]) is PAU and model[1].init == "gelu"
    assert _max_error(model[1], _gelu) < 1e-2
    assert type(model[2]) is PAU and model[2].init == "leaky_relu_0.2"
    assert _max_error(model[2], lambda x: _leaky(x, 0.2)) < 0.03
    assert type(model[3]) is LibIdentity and type(model[4]) is LibScaledReLU
    # Explicit targets mean those types only.
    model = nn.Sequential(LibGELU(), nn.ReLU())
    replace_activations(model, targets=(nn.ReLU,), verbose=False)
    assert type(model[0]) is LibGELU and type(model[1]) is PAU


def test_alias_table_by_class_or_qualified_name(monkeypatch):
    # An unnamed function: matched only through the table; fitted to the module itself, and its
    # init names the closest named function (gelu for x sigmoid(1.702 x)), not the default leaky_relu.
    assert torch_rational.find_activations(nn.Sequential(LibQuickGELU())) == []
    monkeypatch.setitem(torch_rational.rewrite.ACTIVATION_ALIASES, f"{__name__}.LibQuickGELU", None)
    act = replace_activations(LibQuickGELU(), verbose=False)
    assert type(act) is PAU and _max_error(act, _quick_gelu) < 1e-2
    _assert_init(act, "gelu", _gelu, _quick_gelu)
    monkeypatch.setitem(torch_rational.rewrite.ACTIVATION_ALIASES, LibScaledReLU, "relu")
    act = replace_activations(nn.Sequential(LibScaledReLU()), verbose=False)[0]
    assert type(act) is PAU and act.init == "relu"


class TaggedQuickGELU(LibQuickGELU):
    """Notes which instance a fitter evaluates: the probe evaluates on PROBE_GRID, a fitter on its own
    grid. The tag survives the private copies the fitter and the probe work on."""

    fitted_tags: set = set()

    def __init__(self, tag):
        super().__init__()
        self.tag = tag

    def forward(self, x):
        if x.numel() != torch_rational.rewrite.PROBE_GRID.numel():
            TaggedQuickGELU.fitted_tags.add(self.tag)
        return super().forward(x)


def _assert_init(act, closest_name, closest_formula, formula):
    """The init of a module replacing an unnamed function: the replaced function itself where the
    module takes a callable init (the rational family; `init` then names the replaced module), else
    the closest named function (``closest_name``); either way reset_parameters() returns to it."""
    takes_callable = isinstance(act, Rational)
    if takes_callable:
        assert act.init != closest_name and act.init.endswith(")")  # the replaced module's repr
    else:
        assert act.init == closest_name
    with torch.no_grad():
        act.numerator.mul_(0.5)
    act.reset_parameters()
    assert _max_error(act, formula if takes_callable else closest_formula) < 2e-2


def test_each_distinct_function_is_fitted_once(monkeypatch):
    constructed = []

    class CountingPAU(PAU):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            constructed.append(self.init)  # after: a construction that raised does not count

    monkeypatch.setitem(torch_rational.rewrite.ACTIVATION_ALIASES, TaggedQuickGELU, None)
    TaggedQuickGELU.fitted_tags.clear()
    model = nn.Sequential(*[TaggedQuickGELU(i) for i in range(12)], *[LibGELU() for _ in range(3)], nn.GELU())
    replace_activations(model, CountingPAU, verbose=False)
    assert len(TaggedQuickGELU.fitted_tags) == 1, f"QuickGELU fitted for {len(TaggedQuickGELU.fitted_tags)} modules"
    assert len(constructed) == 2, constructed  # one QuickGELU, one for the four gelus
    acts = list(model)
    assert all(type(a) is CountingPAU for a in acts)
    assert len({id(a) for a in acts}) == 16, "distinct places keep distinct modules"
    assert len({id(a.numerator) for a in acts}) == 16, "copies, not shared parameters"
    for a in acts[1:12]:
        assert torch.equal(a.numerator, acts[0].numerator) and torch.equal(a.denominator, acts[0].denominator)
    assert _max_error(acts[0], _quick_gelu) < 1e-2 and _max_error(acts[15], _gelu) < 1e-2
    assert all(a.init == "gelu" for a in acts[12:])
    _assert_init(acts[0], "gelu", _gelu, _quick_gelu)


def test_recorded_init_is_what_reset_parameters_returns_to():
    act = replace_activations(nn.Sequential(LibGELU()), verbose=False)[0]
    with torch.no_grad():
        act.numerator.mul_(0.5)
    assert _max_error(act, _gelu) > 0.1
    act.reset_parameters()
    assert act.init == "gelu" and _max_error(act, _gelu) < 1e-2


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Linear(4, 4)
        self.act = nn.ReLU()
        self.se = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Sigmoid())


def test_exclude_by_name_pattern():
    model = nn.Sequential(_Block(), _Block())
    assert [n for n, _ in torch_rational.find_activations(model, exclude="*.se.*")] == ["0.act", "1.act"]
    replace_activations(model, exclude=["*.se.*", "1.*"], verbose=False)
    assert isinstance(model[0].act, PAU) and isinstance(model[1].act, nn.ReLU)
    assert isinstance(model[0].se[1], nn.ReLU) and isinstance(model[0].se[3], nn.Sigmoid)
    with pytest.raises(TypeError, match="exclude"):
        replace_activations(model, exclude=3)
    with pytest.raises(TypeError, match="exclude"):
        replace_activations(model, exclude=["*.se.*", None])


def test_factory_that_takes_the_name():
    seen = []

    def factory(module, name):
        seen.append((name, type(module).__name__))
        return None if name.endswith(".se.3") else Rational(init="tanh")

    model = nn.Sequential(_Block())
    replace_activations(model, factory, verbose=False)
    assert sorted(seen) == [("0.act", "ReLU"), ("0.se.1", "ReLU"), ("0.se.3", "Sigmoid")]
    assert isinstance(model[0].se[3], nn.Sigmoid) and isinstance(model[0].act, Rational)
