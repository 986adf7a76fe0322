"""Bad arguments raise, with a message that names the offending argument."""

from __future__ import annotations

import pytest
import torch

import torch_rational
from conftest import requires_cuda

rational = torch_rational.functional.rational
raw_rational = torch.ops.torch_rational.rational

ERRORS = (RuntimeError, ValueError, TypeError)
# TORCH_CHECK_INDEX-style range checks surface as IndexError; accept it for channel_dim.
RANGE_ERRORS = ERRORS + (IndexError,)


def _x(shape=(2, 4, 3)):
    return torch.randn(shape)


def _num(groups=2, m=5):
    return torch.randn(groups, m + 1)


def _den(groups=2, nb=4):
    return torch.randn(groups, nb) * 0.1


def _seed():
    return torch.tensor([7], dtype=torch.int64)


# (id, thunk, regex that the message must match)
OP_CASES = [
    ("int_x", lambda: rational(_x().long(), _num(), _den()), r"\bx\b"),
    ("int32_x", lambda: rational(_x().int(), _num(), _den()), r"\bx\b"),
    ("bool_x", lambda: rational(_x() > 0, _num(), _den()), r"\bx\b"),
    ("int_numerator", lambda: rational(_x(), _num().long(), _den()), r"numerator"),
    ("int_denominator", lambda: rational(_x(), _num(), _den().long()), r"denominator"),
    ("numerator_3d", lambda: rational(_x(), _num().reshape(1, 2, 6), _den()), r"numerator"),
    ("denominator_3d", lambda: rational(_x(), _num(), _den().reshape(1, 2, 4)), r"denominator"),
    ("numerator_0d", lambda: rational(_x(), torch.tensor(1.0), _den()), r"numerator"),
    ("group_count_mismatch", lambda: rational(_x((2, 6, 3)), _num(2), _den(3)),
     r"(?i)numerator|denominator|group"),
    ("group_dims_mismatch_1d_vs_2d", lambda: rational(_x(), _num(1)[0], _den(1)), r"(?i)numerator|denominator"),
    ("channels_not_divisible", lambda: rational(_x((2, 5, 3)), _num(2), _den(2), channel_dim=1),
     r"num_groups|channel_dim|groups"),
    ("channels_not_divisible_dim_last", lambda: rational(_x((2, 4, 3)), _num(2), _den(2), channel_dim=-1),
     r"num_groups|channel_dim|groups"),
    ("unknown_version", lambda: rational(_x(), _num(), _den(), version="D"), r"version"),
    ("unknown_version_empty", lambda: rational(_x(), _num(), _den(), version=""), r"version"),
    ("unknown_basis", lambda: rational(_x(), _num(), _den(), basis="chebyshev"), r"basis"),
    ("unknown_basis_typo", lambda: rational(_x(), _num(), _den(), basis="Power"), r"basis"),
    ("numerator_degree_33", lambda: rational(_x(), _num(m=33), _den()), r"(?i)numerator|degree"),
    ("denominator_degree_33_A", lambda: rational(_x(), _num(), _den(nb=33)), r"(?i)denominator|degree"),
    ("denominator_degree_33_C", lambda: rational(_x(), _num(), _den(nb=34), version="C"),
     r"(?i)denominator|degree"),
    ("numerator_empty", lambda: rational(_x(), _num(m=-1), _den()), r"numerator"),
    ("denominator_empty_A", lambda: rational(_x(), _num(), _den(nb=0), version="A"), r"denominator"),
    ("denominator_empty_B", lambda: rational(_x(), _num(), _den(nb=0), version="B"), r"denominator"),
    ("denominator_empty_N", lambda: rational(_x(), _num(), _den(nb=0), version="N"), r"denominator"),
    ("denominator_empty_C", lambda: rational(_x(), _num(), _den(nb=0), version="C"), r"denominator"),
    # C needs n + 1 >= 2 coefficients (b_0 .. b_n, n >= 1 like the other versions).
    ("denominator_too_short_C", lambda: rational(_x(), _num(), _den(nb=1), version="C"), r"denominator"),
    ("negative_noise", lambda: rational(_x(), _num(), _den(), noise=-0.1), r"noise"),
    ("infinite_noise", lambda: rational(_x(), _num(), _den(), noise=float("inf")), r"noise"),
    ("raw_negative_noise", lambda: raw_rational(_x(), _num(), _den(), "A", "power", 1, -0.5, _seed()), r"noise"),
    ("raw_noise_without_seed", lambda: raw_rational(_x(), _num(), _den(), "A", "power", 1, 0.1, None),
     r"noise_seed"),
    ("raw_float_seed", lambda: raw_rational(_x(), _num(), _den(), "A", "power", 1, 0.1,
                                            torch.tensor([7.0])), r"noise_seed"),
    ("raw_two_element_seed", lambda: raw_rational(_x(), _num(), _den(), "A", "power", 1, 0.1,
                                                  torch.tensor([7, 8])), r"noise_seed"),
    ("raw_unknown_version", lambda: raw_rational(_x(), _num(), _den(), "Z", "power", 1, 0.0, None), r"version"),
    ("raw_unknown_basis", lambda: raw_rational(_x(), _num(), _den(), "A", "bernstein", 1, 0.0, None), r"basis"),
]


@pytest.mark.parametrize("thunk,pattern", [pytest.param(t, p, id=i) for i, t, p in OP_CASES])
def test_op_argument_errors(thunk, pattern):
    with pytest.raises(ERRORS, match=pattern):
        thunk()


@pytest.mark.parametrize("channel_dim", [3, 7, -4])
def test_channel_dim_out_of_range(channel_dim):
    with pytest.raises(RANGE_ERRORS, match=r"(?i)channel_dim|dim"):
        rational(_x((2, 4, 3)), _num(2), _den(2), channel_dim=channel_dim)


def test_groups_need_a_channel_dimension():
    with pytest.raises(RANGE_ERRORS, match=r"(?i)\bx\b|channel_dim|dim|groups"):
        rational(torch.tensor(0.5), _num(2), _den(2))


def test_degree_32_is_accepted():
    # The boundary of the degree check: 32 works (values are checked in test_rational_op).
    y = rational(_x(), _num(m=32), _den(nb=32))
    assert y.shape == (2, 4, 3)
    y = rational(_x(), _num(m=32), _den(nb=33), version="C")
    assert y.shape == (2, 4, 3)


def test_errors_do_not_depend_on_requires_grad():
    x = _x().requires_grad_()
    with pytest.raises(ERRORS, match=r"version"):
        rational(x, _num().requires_grad_(), _den().requires_grad_(), version="Q")


@requires_cuda
@pytest.mark.parametrize("where", ["numerator", "denominator", "x"])
def test_coefficients_on_another_device(where):
    x, num, den = _x().cuda(), _num().cuda(), _den().cuda()
    if where == "numerator":
        num = num.cpu()
    elif where == "denominator":
        den = den.cpu()
    else:
        x = x.cpu()
    pattern = r"(?i)device|cuda|cpu" if where == "x" else rf"{where}"
    with pytest.raises(ERRORS, match=pattern):
        rational(x, num, den)


# A meta tensor among CPU ones: Meta outranks CPU in dispatch, so the call lands in the fake kernel,
# which must refuse (it used to return an uninitialised CPU tensor as if computed).
# Valid arguments of every op (CPU, float32) and the names of its tensor arguments by position.
def _op_args(op):
    era_p = [torch.tensor([1.0, 0.0]), torch.tensor([[0.5, 0.1, 0.2, 1.0]])]
    pwlu_p = [torch.linspace(-1, 1, 5), torch.tensor([-2.0, 2.0]), torch.tensor([0.1, 1.0])]
    return {
        "rational": [_x(), _num(), _den(), "A", "power", 1, 0.1, _seed()],
        "rational_backward": [_x(), _x(), _num(), _den(), "A", "power", 1, 0.1, _seed(), [True, True, True]],
        "era": [_x(), *era_p, 1e-6, 1],
        "era_backward": [_x(), _x(), *era_p, 1e-6, 1, [True, True, True]],
        "pwlu": [_x(), *pwlu_p, 1],
        "pwlu_backward": [_x(), _x(), *pwlu_p, 1, [True, True, True, True]],
    }[op]


TENSOR_ARGS = {
    "rational": {"x": 0, "numerator": 1, "denominator": 2},
    "rational_backward": {"grad_output": 0, "x": 1, "numerator": 2, "denominator": 3},
    "era": {"x": 0, "linear": 1, "fractions": 2},
    "era_backward": {"grad_output": 0, "x": 1, "linear": 2, "fractions": 3},
    "pwlu": {"x": 0, "heights": 1, "bounds": 2, "slopes": 3},
    "pwlu_backward": {"grad_output": 0, "x": 1, "heights": 2, "bounds": 3, "slopes": 4},
}
OP_ARG_CASES = [(op, arg) for op, args in TENSOR_ARGS.items() for arg in args]


@pytest.mark.parametrize("op,arg", [c for c in OP_ARG_CASES if c[1] != "x"]
                         + [("rational", "noise_seed"), ("rational_backward", "noise_seed")])
def test_meta_argument_with_cpu_x_is_refused(op, arg):
    a = _op_args(op)
    pos = {"rational": 7, "rational_backward": 8}[op] if arg == "noise_seed" else TENSOR_ARGS[op][arg]
    a[pos] = a[pos].to("meta")
    pattern = rf"torch_rational\.{op}: {arg} is on meta but (x is on cpu|must be a CPU tensor)"
    with pytest.raises(ValueError, match=pattern):
        getattr(torch.ops.torch_rational, op)(*a)


# Unsupported dtypes: (dtype, its name in the C++ message, its name in the fake kernels' message).
BAD_DTYPES = [
    (torch.float8_e4m3fn, "Float8_e4m3fn", "float8_e4m3fn"),
    (torch.int64, "Long", "int64"),
    (torch.int32, "Int", "int32"),
    (torch.bool, "Bool", "bool"),
    (torch.complex64, "ComplexFloat", "complex64"),
]
SUPPORTED = "; supported: float16, bfloat16, float32, float64"


def _with_dtype(t, dtype):
    return t.to(dtype) if dtype != torch.bool else t > 0


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dtype,cname,pyname", BAD_DTYPES, ids=[b[2] for b in BAD_DTYPES])
@pytest.mark.parametrize("op,arg", OP_ARG_CASES)
def test_unsupported_dtype_names_the_argument(op, arg, dtype, cname, pyname, device):
    """x, grad_output and every parameter tensor: a TypeError naming the op, the argument, its dtype
    and the supported ones, from the C++ checks (cpu) and from the fake kernels (meta). A backward
    op's grad_output in a supported dtype other than x's names both."""
    a = [t.to(device) if isinstance(t, torch.Tensor) and t.dtype != torch.int64 else t for t in _op_args(op)]
    if device == "meta" and op.startswith("rational"):
        a[7 if op == "rational" else 8] = _seed()  # noise_seed stays a CPU tensor
    pos = TENSOR_ARGS[op][arg]
    a[pos] = _with_dtype(a[pos], dtype)
    name = cname if device == "cpu" else pyname
    pattern = rf"torch_rational\.{op}: {arg} has dtype {name}{SUPPORTED}"
    with pytest.raises(TypeError, match=pattern):
        getattr(torch.ops.torch_rational, op)(*a)


@pytest.mark.parametrize("op", ["rational", "era", "pwlu"])
def test_supported_dtypes_pass_the_check(op):
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        a = [t.to(dtype) if isinstance(t, torch.Tensor) and t.dtype != torch.int64 else t for t in _op_args(op)]
        assert getattr(torch.ops.torch_rational, op)(*a).dtype == dtype


# ------------------------------------------------------------------------------------------------
# Modules: errors may come from the constructor or from the first forward; both count.


def _construct_and_run(factory):
    module = factory()
    module.train()
    module(torch.randn(2, 4, 3))


MODULE_CASES = [
    ("degrees_one_element", lambda: torch_rational.Rational(degrees=(5,)), r"degrees"),
    ("degrees_three_elements", lambda: torch_rational.Rational(degrees=(5, 4, 3)), r"degrees"),
    ("negative_numerator_degree", lambda: torch_rational.Rational(degrees=(-1, 4)), r"degrees"),
    ("negative_denominator_degree", lambda: torch_rational.Rational(degrees=(5, -2)), r"degrees"),
    ("pau_negative_degree", lambda: torch_rational.PAU(degrees=(5, -1)), r"degrees"),
    ("unknown_init", lambda: torch_rational.Rational(init="no_such_function"), r"init"),
    ("pau_unknown_init", lambda: torch_rational.PAU(init="definitely_not_an_activation"), r"init"),
    ("zero_groups", lambda: torch_rational.Rational(num_groups=0), r"num_groups"),
    ("negative_groups", lambda: torch_rational.Rational(num_groups=-2), r"num_groups"),
    ("opau_zero_groups", lambda: torch_rational.OPAU(num_groups=0), r"num_groups"),
    ("unknown_version", lambda: torch_rational.Rational(version="X"), r"version"),
    ("unknown_basis", lambda: torch_rational.Rational(basis="fourier"), r"basis"),
    ("negative_noise", lambda: torch_rational.Rational(noise=-0.5), r"noise"),
    ("rpau_negative_noise", lambda: torch_rational.RPAU(noise=-0.1), r"noise"),
]


@pytest.mark.parametrize("factory,pattern", [pytest.param(f, p, id=i) for i, f, p in MODULE_CASES])
def test_module_argument_errors(factory, pattern):
    with pytest.raises(ERRORS, match=pattern):
        _construct_and_run(factory)


def test_module_groups_not_dividing_channels():
    module = torch_rational.Rational(num_groups=3)
    with pytest.raises(ERRORS, match=r"num_groups|channel_dim|groups"):
        module(torch.randn(2, 4, 3))


# ------------------------------------------------------------------------------------------------
# replace_activations and friends: a wrong type names the argument.


@pytest.mark.parametrize("call,pattern", [
    (lambda: torch_rational.replace_activations(42), r"replace_activations: model must be an nn.Module, got int"),
    (lambda: torch_rational.replace_activations("resnet18"), r"model must be an nn.Module, got str"),
    (lambda: torch_rational.replace_activations(torch.nn.ReLU, verbose=False), r"model must be an nn.Module"),
    (lambda: torch_rational.replace_activations(torch.nn.ReLU(), inplace="yes"), r"inplace must be True or False"),
    (lambda: torch_rational.replace_activations(torch.nn.ReLU(), verbose=1), r"verbose must be True or False"),
    (lambda: torch_rational.replace_activations(torch.nn.ReLU(), targets="ReLU"), r"targets must be"),
    (lambda: torch_rational.replace_activations(torch.nn.ReLU(), targets=[3]), r"targets must hold"),
    (lambda: torch_rational.replace_activations(torch.nn.ReLU(), factory=3), r"factory must be"),
    (lambda: torch_rational.find_activations(None), r"find_activations: model must be an nn.Module"),
    (lambda: torch_rational.param_groups([torch.nn.Parameter(torch.ones(1))]), r"param_groups: model must be"),
], ids=["int_model", "str_model", "class_model", "inplace", "verbose", "str_targets", "int_targets", "factory",
        "find_activations", "param_groups"])
def test_rewrite_argument_types(call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call()
