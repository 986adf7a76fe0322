"""Derivatives beyond the fused first one, for every op: second derivatives (create_graph=True),
forward-mode AD and torch.func (grad, jacrev, jacfwd, hessian, vmap).

Three independent checks, so that a wrong composite (csrc/ops/composite/) cannot pass by agreeing
with itself:
- second derivatives against autograd on the float64 references written from the formulas
  (reference.py, reference_era.py, test_pwlu.pwlu_reference);
- against central differences of the fused first derivative (which test_rational_op.py & co. check
  against the references), which also covers RPAU noise, which the references do not model;
- torch.autograd.gradgradcheck, for every version, basis, family, with groups and with noise.
"""

from __future__ import annotations

import pytest
import torch

import torch_rational
from conftest import make_case, make_generator, requires_cuda
from reference import rational_reference
from reference_era import era_reference
from test_pwlu import BREAKPOINT_CASES, _math_breakpoints, away_from_breakpoints, make_params, pwlu_reference
from torch_rational.functional import BASES, VERSIONS

ops = torch.ops.torch_rational
SEED = torch.tensor([20261129])


# ------------------------------------------------------------------------------------------------
# Cases: (op, reference or None, inputs) in float64, x away from kinks / breakpoints.


def rational_case(version, basis, *, noise=0.0, groups=2, degrees=(3, 2), seed=0, dtype=torch.float64):
    x, num, den = make_case((2, 4, 3), degrees, version, basis, groups, seed=seed, dtype=dtype)

    def op(x, a, b):
        return ops.rational(x, a, b, version, basis, 1, noise, SEED if noise > 0 else None)

    ref = None if noise > 0 else (lambda x, a, b: rational_reference(x, a, b, version, basis, 1))
    return op, ref, [x, num, den]


def era_case(groups=2, seed=0, dtype=torch.float64):
    gen = make_generator(seed)
    x = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64).to(dtype) * 2
    linear = torch.randn(groups, 2, generator=gen, dtype=torch.float64).to(dtype)
    fractions = torch.randn(groups, 3, 4, generator=gen, dtype=torch.float64).to(dtype)

    def op(x, lin, fr):
        return ops.era(x, lin, fr, 1e-6, 1)

    return op, (lambda x, lin, fr: era_reference(x, lin, fr, 1e-6, 1)), [x, linear, fractions]


def pwlu_case(groups=2, seed=0, dtype=torch.float64):
    gen = make_generator(seed)
    heights, bounds, slopes = make_params(groups, 5, gen=gen, dtype=dtype)
    x = (torch.randn(2, 4, 3, generator=gen, dtype=torch.float64) * 3).to(dtype)
    x = away_from_breakpoints(x, heights, bounds, 1, margin=1e-2)

    def op(x, h, b, s):
        return ops.pwlu(x, h, b, s, 1)

    return op, (lambda x, h, b, s: pwlu_reference(x, h, b, s, 1)), [x, heights, bounds, slopes]


FAMILY_CASES = {"rational": lambda **kw: rational_case("A", "power", **kw), "era": era_case, "pwlu": pwlu_case}


def leaves(tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def second_order_vjp(fn, inputs, grad_output, weights):
    """d/d(inputs, grad_output) of sum_i <grad_i, w_i>, grad_i = vjp of fn at grad_output."""
    ins = leaves(inputs)
    go = grad_output.detach().clone().requires_grad_(True)
    grads = torch.autograd.grad(fn(*ins), ins, go, create_graph=True)
    s = sum((g * w).sum() for g, w in zip(grads, weights))
    return torch.autograd.grad(s, ins + [go], allow_unused=True)


def random_like(tensors, seed):
    gen = make_generator(seed)
    return [torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) for t in tensors]


def assert_close(actual, expected, name, rtol=1e-9):
    assert actual is not None and expected is not None, name
    scale = expected.abs().max().item() + 1e-300
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rtol * scale, f"{name}: max error {err:.3e} vs scale {scale:.3e}"


# ------------------------------------------------------------------------------------------------
# Second derivatives against the float64 references


def check_second_order_against_reference(op, ref, inputs, seed=1):
    go = random_like([inputs[0]], seed)[0]
    weights = random_like(inputs, seed + 1)
    ours = second_order_vjp(op, inputs, go, weights)
    expected = second_order_vjp(ref, inputs, go, weights)
    for k, (a, e) in enumerate(zip(ours, expected)):
        if e is None:  # the reference does not depend on it at all (e.g. d(grad)/d(grad_output) of a constant)
            assert a is None or a.abs().max() == 0, f"input {k}"
        else:
            assert_close(a, e, f"d/d input {k}")


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("version", VERSIONS)
def test_rational_second_derivatives_match_reference(version, basis):
    op, ref, inputs = rational_case(version, basis)
    check_second_order_against_reference(op, ref, inputs)


@pytest.mark.parametrize("one_group", [True, False])
def test_rational_degree_5_4_second_derivatives_match_reference(one_group):
    op, ref, inputs = rational_case("A", "power", degrees=(5, 4), groups=1 if one_group else 4, seed=3)
    check_second_order_against_reference(op, ref, inputs)


@pytest.mark.parametrize("family", ["era", "pwlu"])
@pytest.mark.parametrize("groups", [1, 2])
def test_era_pwlu_second_derivatives_match_reference(family, groups):
    op, ref, inputs = FAMILY_CASES[family](groups=groups)
    check_second_order_against_reference(op, ref, inputs)


# ------------------------------------------------------------------------------------------------
# Against central differences of the fused first derivative (create_graph=False)


def check_against_fused_differences(op, inputs, seed=5, h=1e-6):
    """<grad phi, v> from the create_graph path vs (phi(in + h v) - phi(in - h v)) / 2h, where
    phi = sum_i <fused grad_i, w_i> (no graph: the fused backward kernels)."""
    go = random_like([inputs[0]], seed)[0]
    weights = random_like(inputs, seed + 1)
    direction = random_like(inputs, seed + 2)

    def phi(ins):
        ins = leaves(ins)
        grads = torch.autograd.grad(op(*ins), ins, go)
        return sum((g * w).sum() for g, w in zip(grads, weights)).item()

    plus = phi([t + h * v for t, v in zip(inputs, direction)])
    minus = phi([t - h * v for t, v in zip(inputs, direction)])
    numeric = (plus - minus) / (2 * h)
    analytic = second_order_vjp(op, inputs, go, weights)[: len(inputs)]
    directional = sum((a * v).sum().item() for a, v in zip(analytic, direction) if a is not None)
    assert abs(directional - numeric) <= 1e-6 * (abs(numeric) + 1.0), (directional, numeric)


@pytest.mark.parametrize("noise", [0.0, 0.2])
@pytest.mark.parametrize("basis", ["power", "chebyshev_t", "legendre"])
@pytest.mark.parametrize("version", VERSIONS)
def test_rational_second_derivatives_match_fused_differences(version, basis, noise):
    op, _, inputs = rational_case(version, basis, noise=noise)
    check_against_fused_differences(op, inputs)


@pytest.mark.parametrize("family", ["era", "pwlu"])
def test_era_pwlu_second_derivatives_match_fused_differences(family):
    op, _, inputs = FAMILY_CASES[family]()
    check_against_fused_differences(op, inputs)


# ------------------------------------------------------------------------------------------------
# gradgradcheck


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("version", VERSIONS)
def test_rational_gradgradcheck(version, basis):
    op, _, inputs = rational_case(version, basis)
    assert torch.autograd.gradgradcheck(op, tuple(leaves(inputs)))


@pytest.mark.parametrize("version", VERSIONS)
def test_rational_gradgradcheck_with_noise(version):
    op, _, inputs = rational_case(version, "hermite_e", noise=0.1)
    assert torch.autograd.gradgradcheck(op, tuple(leaves(inputs)))


@pytest.mark.parametrize("family", ["era", "pwlu"])
@pytest.mark.parametrize("groups", [1, 4])
def test_era_pwlu_gradgradcheck(family, groups):
    op, _, inputs = FAMILY_CASES[family](groups=groups)
    assert torch.autograd.gradgradcheck(op, tuple(leaves(inputs)))


# ------------------------------------------------------------------------------------------------
# The first derivative under create_graph=True is the fused one (to rounding)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("family", ["rational", "rational_noise", "era", "pwlu"])
def test_create_graph_first_derivative_matches_fused(family, dtype):
    if family == "rational_noise":
        op, _, inputs = rational_case("B", "legendre", noise=0.3, dtype=dtype)
    else:
        op, _, inputs = FAMILY_CASES[family](dtype=dtype)
    go = random_like([inputs[0]], 9)[0]
    ins = leaves(inputs)
    fused = torch.autograd.grad(op(*ins), ins, go)
    composite = torch.autograd.grad(op(*ins), ins, go, create_graph=True)
    assert all(c.requires_grad for c in composite)
    rtol = 1e-12 if dtype == torch.float64 else 2e-5
    for k, (c, f) in enumerate(zip(composite, fused)):
        assert c.dtype == f.dtype and c.shape == f.shape
        assert_close(c, f, f"gradient {k}", rtol)


# ------------------------------------------------------------------------------------------------
# The edges (docs/DESIGN.md "Math"): the composite takes the kernels' piece at a PWLU breakpoint and
# ERA's limits at +-inf, so the create_graph path gives the fused first derivatives there too.


def fused_and_composite_grads(op, inputs, go):
    ins = leaves(inputs)
    fused = torch.autograd.grad(op(*ins), ins, go)
    composite = torch.autograd.grad(op(*ins), ins, go, create_graph=True)
    return fused, composite


@pytest.mark.parametrize("left,right,n", BREAKPOINT_CASES)
def test_pwlu_create_graph_at_every_breakpoint_takes_the_kernels_piece(left, right, n):
    # float32: the composite rounds the breakpoints as the kernels do (float64 differs by design,
    # see docs/DESIGN.md).
    dtype = torch.float32
    left, right = (torch.tensor(v, dtype=dtype).item() for v in (left, right))
    x = torch.tensor(_math_breakpoints(left, right, n, dtype), dtype=dtype)
    heights = (torch.randn(n + 1, generator=make_generator(n), dtype=torch.float64) * 2).to(dtype)
    inputs = [x, heights, torch.tensor([left, right], dtype=dtype), torch.tensor([0.75, -1.5], dtype=dtype)]
    fused, composite = fused_and_composite_grads(lambda *a: ops.pwlu(*a, 0), inputs, torch.ones_like(x))
    for k, (c, f) in enumerate(zip(composite, fused)):
        assert_close(c, f, f"gradient {k}", rtol=2e-5)


@pytest.mark.parametrize("a", [1.5, -0.75, 0.0])
def test_era_create_graph_at_infinity_takes_the_kernels_limits(a):
    x = torch.tensor([float("inf"), -float("inf"), 0.5], dtype=torch.float64)
    linear = torch.tensor([a, 0.25], dtype=torch.float64)
    fractions = torch.tensor([[0.5, -0.2, 0.3, 1.1], [-1.0, 0.7, -0.4, 0.6]], dtype=torch.float64)
    op = lambda *t: ops.era(*t, 1e-6, 1)  # noqa: E731
    ins = leaves([x, linear, fractions])
    assert torch.equal(op(*ins), ops.era(x, linear, fractions, 1e-6, 1))
    fused, composite = fused_and_composite_grads(op, [x, linear, fractions], torch.ones_like(x))
    assert torch.equal(composite[0][:2], fused[0][:2]) and composite[0][0] == a  # dy/dx = a at +-inf
    assert_close(composite[0][2:], fused[0][2:], "dy/dx at 0.5", rtol=1e-14)
    # The fractions' gradients vanish at +-inf: all that is left is the finite element's.
    assert_close(composite[2], fused[2], "fractions", rtol=1e-14)
    assert composite[1][1] == fused[1][1] == 3  # dy/db = 1 per element
    if a != 0:  # dy/da = x: +inf and -inf summed, NaN in both (a == 0: see docs/DESIGN.md)
        assert composite[1][0].isnan() and fused[1][0].isnan()


# ------------------------------------------------------------------------------------------------
# A WGAN-GP training step: gradient penalty through a PAU critic, one SGD step, against the same
# critic with the reference activation.


class Critic(torch.nn.Module):
    def __init__(self, activation):
        super().__init__()
        self.inp = torch.nn.Linear(6, 8, dtype=torch.float64)
        self.act = activation
        self.out = torch.nn.Linear(8, 1, dtype=torch.float64)

    def forward(self, x):
        return self.out(self.act(self.inp(x)))


class ReferencePAU(torch.nn.Module):
    def __init__(self, pau):
        super().__init__()
        self.numerator = torch.nn.Parameter(pau.numerator.detach().clone())
        self.denominator = torch.nn.Parameter(pau.denominator.detach().clone())

    def forward(self, x):
        return rational_reference(x, self.numerator, self.denominator, "A", "power", 1)


def wgan_gp_step(critic, real, fake, lr=0.05, penalty=10.0):
    opt = torch.optim.SGD(critic.parameters(), lr=lr)
    alpha = torch.linspace(0, 1, real.shape[0], dtype=torch.float64)[:, None]
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    loss = critic(fake).mean() - critic(real).mean() + penalty * ((grad.norm(dim=1) - 1) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def test_wgan_gp_gradient_penalty_step_matches_reference():
    torch.manual_seed(0)
    pau = torch_rational.PAU(num_groups=2).double()
    with torch.no_grad():  # away from the leaky_relu init, so every coefficient matters
        pau.numerator.add_(0.1 * torch.randn_like(pau.numerator))
        pau.denominator.add_(0.1 * torch.randn_like(pau.denominator))
    ours = Critic(pau)
    theirs = Critic(ReferencePAU(pau))
    theirs.inp.load_state_dict(ours.inp.state_dict())
    theirs.out.load_state_dict(ours.out.state_dict())
    gen = make_generator(3)
    real = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    fake = torch.randn(16, 6, generator=gen, dtype=torch.float64) * 0.5
    for _ in range(3):
        loss_ours, loss_theirs = wgan_gp_step(ours, real, fake), wgan_gp_step(theirs, real, fake)
        assert abs(loss_ours - loss_theirs) <= 1e-10 * abs(loss_theirs)
    for name, p in ours.named_parameters():
        assert_close(p, dict(theirs.named_parameters())[name], name)
    assert (ours.act.numerator - pau.numerator).abs().max() == 0  # (same object: the step moved it)


# ------------------------------------------------------------------------------------------------
# Forward-mode AD and torch.func


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_forward_mode_matches_reference_jvp(family):
    import torch.autograd.forward_ad as fwAD

    op, ref, inputs = FAMILY_CASES[family]()
    tangents = random_like(inputs, 11)
    with fwAD.dual_level():
        out = op(*(fwAD.make_dual(t, v) for t, v in zip(inputs, tangents)))
        jvp = fwAD.unpack_dual(out).tangent
    _, expected = torch.func.jvp(ref, tuple(inputs), tuple(tangents))
    assert_close(jvp, expected, "jvp")


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_torch_func_jacrev_jacfwd_hessian_match_reference(family):
    op, ref, inputs = FAMILY_CASES[family]()
    x, coefs = inputs[0], inputs[1:]
    for transform in (torch.func.jacrev, torch.func.jacfwd):
        for argnum in range(len(inputs)):
            assert_close(transform(op, argnums=argnum)(*inputs), transform(ref, argnums=argnum)(*inputs),
                         f"{transform.__name__} argnum {argnum}")

    def loss(f):
        return lambda c: f(x, *coefs[:-1], c).pow(2).sum()

    assert_close(torch.func.hessian(loss(op))(coefs[-1]), torch.func.hessian(loss(ref))(coefs[-1]), "hessian")
    grad_x = torch.func.grad(lambda x: op(x, *coefs).sum())(x)
    assert_close(grad_x, torch.func.grad(lambda x: ref(x, *coefs).sum())(x), "grad")


@pytest.fixture
def vmap_without_fallback():
    """torch.vmap raises instead of looping over the batch for an op without a batching rule."""
    torch._C._functorch._set_vmap_fallback_enabled(False)
    yield
    torch._C._functorch._set_vmap_fallback_enabled(True)


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_vmap_matches_a_loop(family, vmap_without_fallback):
    op, _, inputs = FAMILY_CASES[family](groups=1)
    x, coefs = inputs[0], inputs[1:]
    xs = torch.stack([x, 2 * x, -x])
    looped = torch.stack([op(xi, *coefs) for xi in xs])
    # Under vmap the op runs as the composite: equal to rounding, not bitwise.
    assert_close(torch.vmap(lambda xi: op(xi, *coefs))(xs), looped, "vmap", rtol=1e-14)
    # An ensemble: batched coefficients too (e.g. torch.func.stack_module_state).
    batched = [torch.stack([c, 1.1 * c, 0.9 * c]) for c in coefs]
    if family == "pwlu":  # keep L < R
        batched[1] = torch.stack([coefs[1]] * 3)
    looped = torch.stack([op(xi, *(c[i] for c in batched)) for i, xi in enumerate(xs)])
    assert_close(torch.vmap(op)(xs, *batched), looped, "ensemble", rtol=1e-14)


def test_per_sample_gradients_match_a_loop(vmap_without_fallback):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch_rational.PAU(), torch.nn.Linear(6, 1)).double()
    xs = torch.randn(5, 4, dtype=torch.float64)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, x):
        return torch.func.functional_call(model, p, (x[None],)).pow(2).sum()

    per_sample = torch.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, xs)
    for i, x in enumerate(xs):
        model.zero_grad()
        model(x[None]).pow(2).sum().backward()  # the fused kernels
        for name, p in model.named_parameters():
            assert_close(per_sample[name][i], p.grad, f"{name}[{i}]", rtol=1e-12)


def test_cpp_autograd_path_is_used_outside_transforms():
    # Outside torch.func and without create_graph the fused kernels and their backward op run: the
    # graph holds the C++ node, not the composite's ATen nodes.
    op, _, inputs = rational_case("A", "power")
    ins = leaves(inputs)
    y = op(*ins)
    assert "Rational" in type(y.grad_fn).__name__ or "CppFunction" in type(y.grad_fn).__name__, y.grad_fn


# ------------------------------------------------------------------------------------------------
# CUDA: the composite runs on the GPU's ATen kernels; results match the CPU ones.


@requires_cuda
@pytest.mark.parametrize("family", ["rational", "rational_noise", "era", "pwlu"])
def test_second_derivatives_on_cuda_match_cpu(family):
    if family == "rational_noise":
        op, _, inputs = rational_case("A", "legendre", noise=0.2)
    else:
        op, _, inputs = FAMILY_CASES[family]()
    go = random_like([inputs[0]], 21)[0]
    weights = random_like(inputs, 22)
    cpu = second_order_vjp(op, inputs, go, weights)
    cuda = second_order_vjp(op, [t.cuda() for t in inputs], go.cuda(), [w.cuda() for w in weights])
    for k, (c, g) in enumerate(zip(cpu, cuda)):
        assert (c is None) == (g is None), k
        if c is not None:
            assert g.device.type == "cuda"
            assert_close(g.cpu(), c, f"d/d input {k}", rtol=1e-12)
    jac = torch.func.jacrev(op)(*[t.cuda() for t in inputs])
    assert_close(jac.cpu(), torch.func.jacrev(op)(*inputs), "jacrev", rtol=1e-12)
