"""nn.Module wrappers (Rational, PAU, RPAU, OPAU, HP1, HP2), fit() and the init table."""

from __future__ import annotations

import copy
import io
import json
import math
import pickle
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_rational
from conftest import (
    DEVICES,
    REPO_ROOT,
    avoid_kinks,
    check_against_reference,
    dtype_id,
    make_generator,
    tolerance,
    assert_close_scaled,
)
from reference import denominator_length, error_scales, rational_reference, rational_reference_grads

INIT_TABLE = REPO_ROOT / "configs" / "rational_init.json"

# name -> (factory taking keyword arguments, version, basis) as documented in DESIGN.md
MODULES = {
    "Rational": (torch_rational.Rational, "A", "power"),
    "PAU": (torch_rational.PAU, "A", "power"),
    "RPAU": (torch_rational.RPAU, "A", "power"),
    "OPAU": (torch_rational.OPAU, "A", "chebyshev_t"),
    "HP1": (torch_rational.HP1, "A", "hermite"),
    "HP2": (torch_rational.HP2, "A", "hermite_e"),
}


def _module_input(shape=(2, 6, 5), seed=0, dtype=torch.float32):
    return (torch.randn(shape, generator=make_generator(seed), dtype=torch.float64) * 2).to(dtype)


def _perturb_(module, seed=1):
    gen = make_generator(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))
    return module


def _check_module_output(module, x, version, basis, channel_dim=1):
    """module(x) in eval mode against the reference with the module's own parameters."""
    module.eval()
    x = avoid_kinks(x, module.numerator.detach(), module.denominator.detach(), version, basis, channel_dim)
    y = module(x)
    check_against_reference(y, x, module.numerator.detach(), module.denominator.detach(), version, basis,
                            channel_dim, name=f"{type(module).__name__} output")
    return x, y


# ------------------------------------------------------------------------------------------------
# Parameters, defaults, repr


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("degrees", [(5, 4), (3, 2)], ids=lambda d: f"deg{d[0]}_{d[1]}")
@pytest.mark.parametrize("name", list(MODULES))
def test_parameters_and_shapes(name, degrees, groups):
    factory, version, basis = MODULES[name]
    module = factory(degrees=degrees, num_groups=groups)
    params = dict(module.named_parameters())
    assert set(params) == {"numerator", "denominator"}
    m, n = degrees
    assert params["numerator"].shape == (groups, m + 1)
    assert params["denominator"].shape == (groups, denominator_length(version, n))
    assert all(p.requires_grad and p.dtype == torch.get_default_dtype() for p in params.values())
    # Every group starts from the same initial coefficients.
    for p in params.values():
        assert torch.equal(p, p[:1].expand_as(p))
    # The module uses the documented version and basis.
    _check_module_output(module, _module_input(), version, basis)


@pytest.mark.parametrize("version", ["A", "B", "C", "N"])
def test_rational_version_c_denominator_shape_and_output(version):
    module = torch_rational.Rational(degrees=(4, 3), version=version, basis="legendre", num_groups=2)
    assert module.denominator.shape == (2, denominator_length(version, 3))
    x = _module_input((3, 4, 5), seed=2) * 0.5
    _check_module_output(_perturb_(module, 3) if version != "N" else module, x, version, "legendre")


@pytest.mark.parametrize("channel_dim", [1, -1, 2])
def test_module_channel_dim(channel_dim):
    module = _perturb_(torch_rational.PAU(num_groups=3, channel_dim=channel_dim), seed=5)
    x = _module_input((2, 6, 6), seed=6)
    _check_module_output(module, x, "A", "power", channel_dim)


def test_extra_repr_mentions_configuration():
    module = torch_rational.Rational(degrees=(3, 2), version="B", basis="legendre", num_groups=3)
    text = repr(module)
    assert re.search(r"3,\s*2", text), text
    assert re.search(r"\bB\b", text), text
    assert "legendre" in text, text
    assert re.search(r"groups\D{0,4}3", text), text
    text = repr(torch_rational.HP2(degrees=(6, 5), num_groups=2))
    assert re.search(r"6,\s*5", text) and "hermite_e" in text and re.search(r"groups\D{0,4}2", text), text


@pytest.mark.parametrize("name", list(MODULES))
def test_reset_parameters_restores_init(name):
    factory, _, _ = MODULES[name]
    module = factory(num_groups=2)
    init = {k: v.detach().clone() for k, v in module.named_parameters()}
    _perturb_(module, seed=7)
    assert not torch.equal(module.numerator, init["numerator"])
    module.reset_parameters()
    for k, v in module.named_parameters():
        assert torch.equal(v.detach(), init[k]), k
    # Still parameters of the module (not replaced by plain tensors).
    assert set(dict(module.named_parameters())) == {"numerator", "denominator"}


# ------------------------------------------------------------------------------------------------
# Serialisation and conversion


@pytest.mark.parametrize("name", list(MODULES))
def test_state_dict_round_trip(name):
    factory, version, basis = MODULES[name]
    source = _perturb_(factory(degrees=(4, 3), num_groups=2), seed=11)
    assert set(source.state_dict()) == {"numerator", "denominator"}
    target = factory(degrees=(4, 3), num_groups=2)
    assert not torch.equal(target.numerator, source.numerator)
    target.load_state_dict(source.state_dict())
    for k in ("numerator", "denominator"):
        assert torch.equal(getattr(target, k), getattr(source, k))
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    again = factory(degrees=(4, 3), num_groups=2)
    again.load_state_dict(torch.load(buffer))
    x = _module_input((2, 4, 3), seed=12)
    _, y = _check_module_output(again, x, version, basis)


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("name", list(MODULES))
def test_copy_and_pickle(name, how):
    factory, version, basis = MODULES[name]
    source = _perturb_(factory(degrees=(4, 3), num_groups=2, channel_dim=-1), seed=13)
    clone = copy.deepcopy(source) if how == "deepcopy" else pickle.loads(pickle.dumps(source))
    assert type(clone) is type(source)
    for k in ("numerator", "denominator"):
        assert torch.equal(getattr(clone, k), getattr(source, k))
        assert getattr(clone, k) is not getattr(source, k)
    assert clone.training == source.training
    # The configuration (version, basis, channel_dim) travelled too.
    _check_module_output(clone, _module_input((3, 5, 4), seed=14), version, basis, channel_dim=-1)
    # Independent storage.
    with torch.no_grad():
        clone.numerator.zero_()
    assert source.numerator.abs().sum() > 0


@pytest.mark.parametrize("convert", ["to_float64", "double"])
def test_to_float64(convert):
    module = _perturb_(torch_rational.OPAU(degrees=(5, 4), num_groups=2), seed=15)
    module = module.to(torch.float64) if convert == "to_float64" else module.double()
    assert module.numerator.dtype == torch.float64 and module.denominator.dtype == torch.float64
    assert isinstance(module.numerator, nn.Parameter)
    x = _module_input((2, 4, 3), seed=16, dtype=torch.float64)
    _, y = _check_module_output(module, x, "A", "chebyshev_t")
    assert y.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=dtype_id)
def test_float32_module_on_low_precision_input(dtype):
    # AMP-style: float32 parameters, low-precision activations; gradients in float32.
    module = _perturb_(torch_rational.PAU(num_groups=2), seed=17)
    x = _module_input((2, 4, 3), seed=18, dtype=dtype)
    x, y = _check_module_output(module, x, "A", "power")
    assert y.dtype == dtype
    y.float().sum().backward()
    assert module.numerator.grad.dtype == torch.float32


@pytest.mark.parametrize("device", DEVICES)
def test_module_to_device(device):
    module = _perturb_(torch_rational.HP1(num_groups=2), seed=19).to(device)
    assert module.numerator.device.type == device
    x = _module_input((2, 4, 3), seed=20).to(device)
    _check_module_output(module, x, "A", "hermite")


# ------------------------------------------------------------------------------------------------
# Drop-in replacement for nn.ReLU


def _activation_check(act, h):
    """act(h) against the reference (G = 1) and backward reaching act's parameters."""
    act.eval()
    num, den = act.numerator.detach(), act.denominator.detach()
    y = act(h)
    check_against_reference(y.detach(), h.detach(), num, den, "A", "power", 1, name="PAU(h)")


@pytest.mark.parametrize(
    "kind", ["linear_2d", "conv_4d", "vector_1d", "scalar_0d"])
def test_pau_in_sequential_like_relu(kind):
    torch.manual_seed(21)
    pau = torch_rational.PAU()
    if kind == "linear_2d":
        net = nn.Sequential(nn.Linear(4, 8), pau, nn.Linear(8, 3))
        ref_net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        x = torch.randn(5, 4)
    elif kind == "conv_4d":
        net = nn.Sequential(nn.Conv2d(3, 4, 3), pau, nn.Conv2d(4, 2, 1))
        ref_net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
        x = torch.randn(2, 3, 6, 6)
    elif kind == "vector_1d":
        net, ref_net = nn.Sequential(pau), nn.Sequential(nn.ReLU())
        x = torch.randn(7)
    else:
        net, ref_net = nn.Sequential(pau), nn.Sequential(nn.ReLU())
        x = torch.tensor(0.3)
    out = net(x)
    assert out.shape == ref_net(x).shape
    out.sum().backward()
    assert pau.numerator.grad is not None and torch.isfinite(pau.numerator.grad).all()
    assert pau.denominator.grad is not None and torch.isfinite(pau.denominator.grad).all()
    # The activation itself, on what reaches it.
    h = net[0](x) if len(net) > 1 else x
    _activation_check(pau, h.detach())


# ------------------------------------------------------------------------------------------------
# RPAU: noise in training mode only


def test_rpau_eval_equals_pau_and_train_is_noisy():
    rpau = _perturb_(torch_rational.RPAU(num_groups=2), seed=23)
    pau = torch_rational.PAU(num_groups=2)
    pau.load_state_dict(rpau.state_dict())
    x = avoid_kinks(_module_input((4, 4, 16), seed=24), rpau.numerator.detach()[0], rpau.denominator.detach()[0],
                    "A", "power", 1)
    rpau.eval(), pau.eval()
    y_eval = rpau(x)
    assert torch.equal(y_eval, pau(x))
    check_against_reference(y_eval, x, rpau.numerator.detach(), rpau.denominator.detach(), "A", "power", 1)
    rpau.train()
    torch.manual_seed(3)
    y_train = rpau(x)
    assert (y_train != y_eval).float().mean() > 0.9
    torch.manual_seed(3)
    assert torch.equal(rpau(x), y_train)  # reproducible under torch.manual_seed
    # Default noise 0.1: y changes by a bounded relative amount (each coefficient scaled by 1 +- 0.1).
    ref = rational_reference(x, rpau.numerator.detach(), rpau.denominator.detach(), "A", "power", 1)
    scale = error_scales(x, rpau.numerator.detach(), rpau.denominator.detach(), None, "A", "power", 1)["y"]
    assert ((y_train.double() - ref).abs() <= 0.35 * scale + 1e-6).all()
    # Training-mode backward works and reaches the parameters.
    y_train.sum().backward()
    assert torch.isfinite(rpau.numerator.grad).all() and torch.isfinite(rpau.denominator.grad).all()
    # A PAU (no noise) is deterministic in training mode.
    pau.train()
    assert torch.equal(pau(x), y_eval)


# ------------------------------------------------------------------------------------------------
# Initialisation, fitting and the init table


def test_pau_default_init_approximates_leaky_relu():
    module = torch_rational.PAU().double().eval()
    x = torch.linspace(-3, 3, 4001, dtype=torch.float64)
    with torch.no_grad():
        y = module(x)
    err = (y - F.leaky_relu(x, 0.01)).abs().max().item()
    assert err <= 0.035, err
    # The same coefficients through the reference (so the error is the approximation's, not the op's).
    ref = rational_reference(x, module.numerator.detach(), module.denominator.detach(), "A", "power")
    err_ref = (ref - F.leaky_relu(x, 0.01)).abs().max().item()
    assert err_ref <= 0.035, err_ref


def _max_error(fn_values, x, num, den, version, basis):
    return (rational_reference(x, num, den, version, basis) - fn_values).abs().max().item()


def test_fit_tanh():
    result = torch_rational.fit("tanh", (5, 4))
    num, den = torch.as_tensor(result.numerator), torch.as_tensor(result.denominator)
    assert num.shape == (6,) and den.shape == (4,)
    max_error = float(result.max_error)
    assert max_error <= 1e-3, max_error
    x = torch.linspace(-3, 3, 4001, dtype=torch.float64)
    measured = _max_error(torch.tanh(x), x, num.double(), den.double(), "A", "power")
    assert measured <= 1e-3 + 1e-6, measured
    assert abs(measured - max_error) <= 0.05 * max_error + 1e-6, (measured, max_error)
    # Applied through the op, the coefficients reproduce tanh.
    y = torch_rational.functional.rational(x, num.double(), den.double())
    assert (y - torch.tanh(x)).abs().max().item() <= 1e-3 + 1e-6
    y32 = torch_rational.functional.rational(x.float(), num.float(), den.float())
    assert (y32.double() - torch.tanh(x)).abs().max().item() <= 1e-3 + 1e-5


@pytest.mark.parametrize("fit_range", [(-3.0, 3.0), (-2.0, 1.0)], ids=["range-3_3", "range-2_1"])
@pytest.mark.parametrize("version,basis,degrees", [("A", "power", (3, 2)), ("B", "chebyshev_t", (4, 4)),
                                                   ("C", "legendre", (5, 4))], ids=lambda v: str(v))
def test_fit_reports_its_own_error(version, basis, degrees, fit_range):
    result = torch_rational.fit("tanh", degrees, version=version, basis=basis, range=fit_range, num_points=2001)
    num, den = torch.as_tensor(result.numerator).double(), torch.as_tensor(result.denominator).double()
    assert num.shape == (degrees[0] + 1,) and den.shape == (denominator_length(version, degrees[1]),)
    x = torch.linspace(*fit_range, 2001, dtype=torch.float64)
    measured = _max_error(torch.tanh(x), x, num, den, version, basis)
    max_error = float(result.max_error)
    assert math.isfinite(max_error)
    assert abs(measured - max_error) <= 0.05 * max_error + 1e-6, (measured, max_error)
    assert measured < 0.05  # a rational of this size fits tanh far better than a constant


_TORCH_FUNCTIONS = {
    "relu": torch.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "leaky_relu_0.2": lambda x: F.leaky_relu(x, 0.2),
    "leaky_relu_0.3": lambda x: F.leaky_relu(x, 0.3),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "swish": F.silu,
    "elu": F.elu,
    "selu": F.selu,
    "celu": F.celu,
    "softplus": F.softplus,
    "mish": F.mish,
    "softsign": F.softsign,
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "hardtanh": F.hardtanh,
    "relu6": F.relu6,
    "identity": lambda x: x,
}


def _table_entries():
    if not INIT_TABLE.exists():
        return [pytest.param(None, id="missing-rational_init.json")]
    entries = json.loads(INIT_TABLE.read_text())["entries"]
    return [pytest.param(e, id=f"{e['function']}-{e['version']}-{e['basis']}-deg{e['degrees'][0]}_{e['degrees'][1]}")
            for e in entries]


TABLE = _table_entries()


def _one_entry_per_configuration(params):
    # The module only has to pass (init, degrees, version, basis) through: one entry per
    # configuration, rotating over the functions, covers that without repeating
    # test_init_coefficients_match_table for all entries.
    if len(params) == 1 and params[0].values[0] is None:
        return params
    by_config = {}
    for p in params:
        e = p.values[0]
        by_config.setdefault((e["version"], e["basis"], tuple(e["degrees"])), []).append(p)
    return [group[i % len(group)] for i, group in enumerate(by_config.values())]


TABLE_PER_CONFIGURATION = _one_entry_per_configuration(TABLE)


def _require(entry):
    assert entry is not None, f"{INIT_TABLE} is missing"
    return entry


def test_init_table_is_well_formed():
    assert INIT_TABLE.exists(), f"{INIT_TABLE} is missing"
    entries = json.loads(INIT_TABLE.read_text())["entries"]
    assert entries
    keys = {(e["function"], e["version"], e["basis"], tuple(e["degrees"])) for e in entries}
    assert len(keys) == len(entries), "duplicate entries"
    assert ("leaky_relu", "A", "power", (5, 4)) in keys, "PAU's default init is not in the table"
    for e in entries:
        m, n = e["degrees"]
        assert len(e["numerator"]) == m + 1, e
        assert len(e["denominator"]) == denominator_length(e["version"], n), e
        assert all(math.isfinite(v) for v in e["numerator"] + e["denominator"]), e
        assert math.isfinite(e["max_error"]) and e["max_error"] >= 0, e


@pytest.mark.parametrize("entry", TABLE)
def test_init_coefficients_match_table(entry):
    e = _require(entry)
    num, den = torch_rational.init_coefficients(e["function"], tuple(e["degrees"]), version=e["version"],
                                                basis=e["basis"])
    torch.testing.assert_close(torch.as_tensor(num).double().reshape(-1),
                               torch.tensor(e["numerator"], dtype=torch.float64), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.as_tensor(den).double().reshape(-1),
                               torch.tensor(e["denominator"], dtype=torch.float64), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("entry", TABLE)
def test_table_max_error_is_honest(entry):
    # The coefficients approximate the named function on the fitting range as well as claimed.
    e = _require(entry)
    fn = _TORCH_FUNCTIONS.get(e["function"])
    if fn is None:
        pytest.skip(f"no torch reference for {e['function']!r}")
    lo, hi = e.get("range", (-3.0, 3.0))
    x = torch.linspace(lo, hi, 4001, dtype=torch.float64)
    measured = _max_error(fn(x), x, torch.tensor(e["numerator"], dtype=torch.float64),
                          torch.tensor(e["denominator"], dtype=torch.float64), e["version"], e["basis"])
    assert measured <= 1.02 * e["max_error"] + 1e-6, (measured, e["max_error"])


@pytest.mark.parametrize("entry", TABLE_PER_CONFIGURATION)
def test_module_init_uses_table(entry):
    e = _require(entry)
    m, n = e["degrees"]
    module = torch_rational.Rational(degrees=(m, n), version=e["version"], basis=e["basis"], init=e["function"],
                                     num_groups=2)
    want_num = torch.tensor(e["numerator"], dtype=torch.float64).expand(2, -1)
    want_den = torch.tensor(e["denominator"], dtype=torch.float64).expand(2, -1)
    torch.testing.assert_close(module.numerator.detach().double(), want_num, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(module.denominator.detach().double(), want_den, rtol=1e-6, atol=1e-7)


def test_pau_default_is_table_leaky_relu():
    entries = json.loads(INIT_TABLE.read_text())["entries"] if INIT_TABLE.exists() else []
    match = [e for e in entries if (e["function"], e["version"], e["basis"], tuple(e["degrees"]))
             == ("leaky_relu", "A", "power", (5, 4))]
    assert match, "leaky_relu (5, 4) A power missing from the init table"
    pau = torch_rational.PAU()
    torch.testing.assert_close(pau.numerator.detach().double()[0],
                               torch.tensor(match[0]["numerator"], dtype=torch.float64), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(pau.denominator.detach().double()[0],
                               torch.tensor(match[0]["denominator"], dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_module_gradients_match_reference():
    # Parameters receive the reference's gradients through the module.
    module = _perturb_(torch_rational.OPAU(degrees=(5, 4), num_groups=2), seed=25)
    x = avoid_kinks(_module_input((2, 4, 3), seed=26), module.numerator.detach()[0], module.denominator.detach()[0],
                    "A", "chebyshev_t", 1)
    g = _module_input((2, 4, 3), seed=27) * 0.5
    module(x).backward(g)
    _, _, rga, rgb = rational_reference_grads(x, module.numerator, module.denominator, g, "A", "chebyshev_t", 1)
    s = error_scales(x, module.numerator, module.denominator, g, "A", "chebyshev_t", 1)
    assert_close_scaled(module.numerator.grad, rga, s["grad_numerator"], tolerance(torch.float32), "grad_numerator")
    assert_close_scaled(module.denominator.grad, rgb, s["grad_denominator"], tolerance(torch.float32),
                        "grad_denominator")


# ---- module options (issue 16) and KAT's group-rational layer (issue 15) ----------------------------

def _rational_a_reference(x, a, b):
    """Float64 safe rational (version A, power basis) written from the formula
    P(x) / (1 + sum_k |b_k| |x|^k), one row of coefficients."""
    x = x.double()
    p = sum(a[j].double() * x**j for j in range(a.numel()))
    q = 1 + sum(b[k - 1].double().abs() * x.abs() ** k for k in range(1, b.numel() + 1))
    return p / q


@pytest.mark.parametrize("flags, grads", [
    ({}, (True, True)),
    ({"trainable": False}, (False, False)),
    ({"train_numerator": False}, (False, True)),
    ({"train_denominator": False}, (True, False)),
])
def test_trainable_flags_set_requires_grad(flags, grads):
    act = torch_rational.PAU(**flags)
    assert (act.numerator.requires_grad, act.denominator.requires_grad) == grads
    assert set(dict(act.named_parameters())) == {"numerator", "denominator"}
    x = torch.randn(64, requires_grad=True)
    act(x).sum().backward()
    assert (act.numerator.grad is not None, act.denominator.grad is not None) == grads


def test_init_callable_fits_on_fit_range_and_reset_restores_it():
    target = lambda x: torch.where(x > 0, x, 0.5 * x)  # noqa: E731  (a lambda: pickling must still work)
    act = torch_rational.PAU(init=target, fit_range=(-2.0, 2.0), dtype=torch.float64)
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    ref = _rational_a_reference(x, act.numerator[0].detach(), act.denominator[0].detach())
    assert (ref - target(x)).abs().max() < 0.05  # the fit approximates the callable on its range
    start = (act.numerator.detach().clone(), act.denominator.detach().clone())
    with torch.no_grad():
        act.numerator.add_(1.0)
        act.denominator.mul_(3.0)
    act.reset_parameters()
    assert torch.equal(act.numerator, start[0]) and torch.equal(act.denominator, start[1])
    for clone in (copy.deepcopy(act), pickle.loads(pickle.dumps(act))):
        assert torch.equal(clone.numerator, act.numerator)
        clone.reset_parameters()
        assert torch.equal(clone.numerator, start[0])
    assert "fit_range=(-2.0, 2.0)" in repr(act) and "init='<lambda>'" in repr(act)
    assert set(act.state_dict()) == {"numerator", "denominator"}


def test_init_module_callable_matches_named_fit():
    named = torch_rational.PAU(init="gelu", fit_range=(-4.0, 4.0))
    callable_ = torch_rational.PAU(init=torch.nn.GELU(), fit_range=(-4.0, 4.0))
    assert torch.allclose(named.numerator, callable_.numerator) and callable_.init == "GELU"


def test_hardswish_init_follows_hardswish_past_three():
    x = torch.tensor([-8.0, -5.0, -4.0, 4.0, 5.0, 8.0], dtype=torch.float64)
    act = torch_rational.PAU(init="hardswish", dtype=torch.float64)
    ref = _rational_a_reference(x, act.numerator[0].detach(), act.denominator[0].detach())
    # Was the parabola x(x+3)/6 fitted on [-3, 3]: 6.67 at -8 where hardswish is 0.
    err = (ref - torch.nn.functional.hardswish(x)).abs()
    assert err[1:-1].max() < 0.1 and err.max() < 1.0


def test_relu6_init_differs_from_relu_and_bends_at_six():
    relu6 = torch_rational.PAU(init="relu6", dtype=torch.float64)
    relu = torch_rational.PAU(init="relu", dtype=torch.float64)
    assert not torch.allclose(relu6.numerator, relu.numerator)
    x = torch.tensor([-4.0, 2.0, 5.0, 7.5], dtype=torch.float64)
    ref = _rational_a_reference(x, relu6.numerator[0].detach(), relu6.denominator[0].detach())
    assert (ref - torch.nn.functional.relu6(x)).abs().max() < 0.6


def test_init_fit_warns_when_it_strays_outside_fit_range():
    with pytest.warns(UserWarning, match="departs from it just outside"):
        torch_rational.PAU(init=torch.nn.Hardswish(), fit_range=(-3.0, 3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_rational.PAU(init=torch.nn.Hardswish(), fit_range=(-6.0, 6.0))
        torch_rational.PAU(init=torch.tanh, fit_range=(-3.0, 3.0))


@pytest.mark.parametrize("kwargs, match", [
    ({"fit_range": (2.0, 1.0)}, "fit_range"),
    ({"fit_range": (0.0, float("inf"))}, "fit_range"),
    ({"fit_range": 3.0}, "fit_range"),
    ({"init": "random", "fit_range": (-1.0, 1.0)}, "fit_range"),
    ({"init": 3}, "init"),
    ({"trainable": "no"}, "trainable"),
    ({"init": lambda x: x[:3]}, "shape"),
])
def test_bad_init_options_raise_naming_them(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        torch_rational.PAU(**kwargs)


# Every family takes init as a name or a callable (Rational and ERA fit it, PWLU keeps it).
INIT_FAMILIES = {"PAU": torch_rational.PAU, "ERA": torch_rational.ERA, "PWLU": torch_rational.PWLU}


def _raising_init(x):
    return 1 // 0


@pytest.mark.parametrize("family", list(INIT_FAMILIES))
@pytest.mark.parametrize("init, exc, match", [
    (lambda x: x.flatten()[:3], ValueError, r"init must return a tensor of its input's shape"),
    (lambda x: x.tolist(), TypeError, r"init must return a Tensor, got list"),
    (_raising_init, RuntimeError, r"init '_raising_init' raised ZeroDivisionError"),
    (3, TypeError, r"init must be a function name or a callable"),
], ids=["shape", "not_a_tensor", "raises", "not_callable"])
def test_bad_callable_init_raises_naming_init(family, init, exc, match):
    with pytest.raises(exc, match=match):
        INIT_FAMILIES[family](init=init)


@pytest.mark.parametrize("family", list(INIT_FAMILIES))
def test_callable_init_is_no_submodule_and_keeps_state_dict_keys(family):
    cls = INIT_FAMILIES[family]
    act = cls(init=torch.nn.Hardswish())
    assert list(act.children()) == [] and "init='Hardswish'" in repr(act) and act.init == "Hardswish"
    assert set(act.state_dict()) == set(cls().state_dict())


def _kat_group_reference(x, numerator, denominators):
    """KAT's group-rational layer in float64 from its formula: x (B, T, C), channels split into G
    contiguous blocks; block g uses the shared numerator and denominator g:
    y = (sum_j a_j x^j) / (1 + sum_k |b_gk| |x|^k)."""
    B, T, C = x.shape
    G = denominators.shape[0]
    xg = x.double().reshape(B, T, G, C // G)
    out = torch.empty_like(xg)
    for g in range(G):
        out[:, :, g] = _rational_a_reference(xg[:, :, g], numerator, denominators[g])
    return out.reshape(B, T, C)


def test_shared_numerator_matches_kat_formula_on_tokens():
    torch.manual_seed(0)
    G = 4
    act = torch_rational.Rational((5, 4), init="gelu", num_groups=G, channel_dim=-1, shared_numerator=True,
                       dtype=torch.float64)
    assert act.numerator.shape == (6,) and act.denominator.shape == (G, 4)
    with torch.no_grad():  # distinct denominators per group, so a group mix-up shows
        act.denominator.add_(0.05 * torch.randn(G, 4, dtype=torch.float64))
    x = torch.randn(2, 5, 16, dtype=torch.float64, requires_grad=True)
    y = act(x)
    ref = _kat_group_reference(x.detach(), act.numerator.detach(), act.denominator.detach())
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    # Gradient of the shared numerator: the sum over groups, from the float64 reference.
    num = act.numerator.detach().clone().requires_grad_(True)
    den = act.denominator.detach().clone().requires_grad_(True)
    w = torch.randn_like(ref)
    (_kat_group_reference(x.detach(), num, den) * w).sum().backward()
    (y * w).sum().backward()
    torch.testing.assert_close(act.numerator.grad, num.grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(act.denominator.grad, den.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("init", ["identity", "gelu", "swish"])
def test_shared_numerator_inits_like_kat(init):
    act = torch_rational.Rational((5, 4), init=init, num_groups=8, channel_dim=-1, shared_numerator=True)
    x = torch.linspace(-3, 3, 64).reshape(1, 8, 8)
    ref = torch.ops.torch_rational.activation_function(init, x.double())
    assert (act(x).double() - ref).abs().max() < 0.02


def test_reassigning_init_name_retargets_reset():
    act = torch_rational.PAU(init="relu", dtype=torch.float64)
    act.init = "tanh"
    act.reset_parameters()
    x = torch.linspace(-3, 3, 301, dtype=torch.float64)
    ref = _rational_a_reference(x, act.numerator[0].detach(), act.denominator[0].detach())
    assert (ref - torch.tanh(x)).abs().max() < 0.01
    assert "init='tanh'" in repr(act) and set(act.state_dict()) == {"numerator", "denominator"}


def _as_pickled_before_callable_inits(module, init_attribute, **replaced):
    """``module`` loaded from the state the previous version pickled: init a name in a plain
    attribute (``replaced``: the parts of the state that version did not have)."""
    state = dict(module.__dict__, **replaced)
    state["init"] = state.pop(init_attribute)
    old = type(module).__new__(type(module))
    old.__setstate__(state)
    return old


def test_era_and_pwlu_unpickle_from_before_callable_inits():
    # Modules pickled by the previous version kept init as a plain attribute (a name) and ERA had no
    # init buffers: such a state still loads, and reset_parameters() returns to the named init.
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    era = torch_rational.ERA(1, init="tanh", dtype=torch.float64)
    old_era = _as_pickled_before_callable_inits(era, "_init_name", _buffers={}, _non_persistent_buffers_set=set())
    old_pwlu = _as_pickled_before_callable_inits(torch_rational.PWLU(8, init="gelu", dtype=torch.float64),
                                                 "_init_function")
    with torch.no_grad():
        old_era.linear.zero_()
        old_pwlu.heights.zero_()
    old_era.reset_parameters()
    old_pwlu.reset_parameters()
    tanh = (torch.exp(2 * x) - 1) / (torch.exp(2 * x) + 1)
    assert old_era.init == "tanh" and (old_era(x) - tanh).abs().max() <= 2e-3
    points = torch.linspace(-3, 3, 9, dtype=torch.float64)
    gelu = 0.5 * points * (1 + torch.erf(points / math.sqrt(2.0)))
    assert old_pwlu.init == "gelu"
    torch.testing.assert_close(old_pwlu.heights[0].detach(), gelu, rtol=1e-12, atol=1e-12)
