"""A rewritten model works wherever torch works: torch.compile, torch.export, autocast (no float32
copies of whole activations around the op), state_dict / deepcopy / pickle / dtype changes.

The reference for compiled / exported runs is the eager run of the same model (the op itself is
checked against the float64 formula in test_rational_op.py); AMP runs are checked against a float64
run of the same model.
"""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import torch_rational
from torch_rational import replace_activations

HAS_CUDA = torch.cuda.is_available()


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.SiLU(), nn.Linear(16, 3),
    )


def rewritten_cnn(seed: int = 0) -> nn.Module:
    return replace_activations(small_cnn(seed), verbose=False)


def make_input(shape=(4, 1, 8, 8), seed=1, dtype=torch.float32, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g) * 2).to(dtype=dtype, device=device)


def outputs_and_grads(model, x):
    model.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_(True)
    y = model(xr)
    (y * torch.arange(1, y.numel() + 1, dtype=y.dtype).reshape(y.shape)).sum().backward()
    # torch.compile's wrapper prefixes the names with "_orig_mod."
    grads = {n.removeprefix("_orig_mod."): p.grad.clone() for n, p in model.named_parameters()}
    return y.detach(), xr.grad, grads


# ------------------------------------------------------------------------------------------------
# torch.compile / torch.export


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(backend):
    torch._dynamo.reset()
    model = rewritten_cnn()
    x = make_input()
    y_e, gx_e, g_e = outputs_and_grads(model, x)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    y_c, gx_c, g_c = outputs_and_grads(compiled, x)
    torch.testing.assert_close(y_c, y_e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx_c, gx_e, rtol=1e-4, atol=1e-5)
    assert g_c.keys() == g_e.keys() and any("numerator" in k for k in g_c)
    for k in g_e:
        torch.testing.assert_close(g_c[k], g_e[k], rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"grad of {k}: {m}")


def test_export_and_run_exported_program():
    model = rewritten_cnn().eval()
    x = make_input()
    ep = torch.export.export(model, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "torch_rational.rational.default" in targets, targets
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(ep.module()(x), expected, rtol=1e-6, atol=1e-6)
        x2 = make_input(seed=2)
        torch.testing.assert_close(ep.module()(x2), model(x2), rtol=1e-6, atol=1e-6)
    # Serialised and loaded back (the op is found by name in the loaded program).
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module()(x), expected, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Autocast


class OpLog(TorchDispatchMode):
    """Records every op below autograd with its input and output tensors."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        ins = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        outs = [o for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
        self.calls.append((str(func), ins, outs))
        return out


def check_amp_run(model, x, device_type, dtype):
    """Runs fwd+bwd under autocast and checks that the activations run on `dtype` (no upcast before
    the op, none of its inputs or outputs copied to float32 after it)."""
    with OpLog() as log:
        with torch.autocast(device_type, dtype=dtype):
            y = model(x)
        y.float().sum().backward()
    fwd = [c for c in log.calls if c[0] == "torch_rational.rational.default"]
    bwd = [c for c in log.calls if c[0] == "torch_rational.rational_backward.default"]
    assert len(fwd) == 3 and len(bwd) == 3, [c[0] for c in log.calls]
    activations = []  # every activation-sized tensor the op saw or made
    for _, ins, outs in fwd:
        assert ins[0].dtype == dtype, f"rational got x of {ins[0].dtype}, expected {dtype} (an upcast before the op)"
        assert ins[1].dtype == torch.float32, "coefficients stay float32 (the op takes mixed dtypes)"
        assert outs[0].dtype == dtype, f"rational returned {outs[0].dtype}, expected {dtype}"
        activations += [ins[0], outs[0]]
    for _, ins, outs in bwd:
        assert ins[0].dtype == dtype and ins[1].dtype == dtype, f"rational_backward got {ins[0].dtype}, {ins[1].dtype}"
        assert outs[0].dtype == dtype, "grad_x in the activation dtype"
        assert outs[1].dtype == torch.float32 and outs[2].dtype == torch.float32, "coefficient grads in float32"
        activations += [ins[0], ins[1], outs[0]]
    ptrs = {t.untyped_storage().data_ptr() for t in activations}
    copies = [c[0] for c in log.calls if c[0].startswith(("aten._to_copy", "aten.to", "aten.copy_"))
              and any(t.untyped_storage().data_ptr() in ptrs for t in c[1])
              and any(o.dtype == torch.float32 for o in c[2])]
    assert not copies, f"float32 copies of activations around the op: {copies}"
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), n
    return y


def test_autocast_cpu_bfloat16_runs_the_op_in_bfloat16():
    model = rewritten_cnn()
    x = make_input()
    y = check_amp_run(model, x, "cpu", torch.bfloat16)
    assert y.dtype == torch.bfloat16
    with torch.no_grad():
        y64 = copy.deepcopy(model).to(torch.float64)(x.to(torch.float64))
    err = (y.double() - y64).abs().max() / y64.abs().max()
    assert err < 0.05, f"bf16 autocast output relative error {err:.3g}"


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_cuda(dtype):
    model = rewritten_cnn().cuda()
    x = make_input(device="cuda")
    y = check_amp_run(model, x, "cuda", dtype)
    assert y.dtype == dtype
    with torch.no_grad():
        y64 = copy.deepcopy(model).to(torch.float64)(x.to(torch.float64))
    err = (y.double() - y64).abs().max() / y64.abs().max()
    assert err < 0.05, f"{dtype} autocast output relative error {err:.3g}"


# ------------------------------------------------------------------------------------------------
# State: state_dict, deepcopy, pickle, dtype changes


def _trained(model, steps=2):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for i in range(steps):
        opt.zero_grad()
        model(make_input(seed=10 + i)).square().mean().backward()
        opt.step()
    return model


def test_state_dict_into_a_fresh_model():
    model = _trained(rewritten_cnn(seed=0))
    fresh = rewritten_cnn(seed=5)
    x = make_input()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
        missing, unexpected = fresh.load_state_dict(model.state_dict())
        assert not missing and not unexpected
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)
    sd = model.state_dict()
    assert any(k.endswith("numerator") for k in sd) and not any("_torch_rational" in k for k in sd)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
def test_copies(how):
    model = _trained(rewritten_cnn())
    rec = torch_rational.record_inputs(model)  # models with recording hooks still copy
    if how == "deepcopy":
        clone = copy.deepcopy(model)
    elif how == "pickle":
        clone = pickle.loads(pickle.dumps(model))
    else:
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        clone = torch.load(buf, weights_only=False)
    rec.remove()
    x = make_input()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    p_clone = dict(clone.named_parameters())
    for n, p in model.named_parameters():
        assert p_clone[n].data_ptr() != p.data_ptr(), f"{n} shares storage with the original"
    _, _, g_c = outputs_and_grads(clone, x)
    _, _, g_m = outputs_and_grads(model, x)
    for k in g_m:
        torch.testing.assert_close(g_c[k], g_m[k], rtol=0, atol=0)


def test_to_float64_and_half():
    model = _trained(rewritten_cnn())
    x = make_input()
    with torch.no_grad():
        y32 = model(x)
        m64 = copy.deepcopy(model).to(torch.float64)
        assert all(p.dtype == torch.float64 for p in m64.parameters())
        y64 = m64(x.to(torch.float64))
        assert y64.dtype == torch.float64
        torch.testing.assert_close(y64.float(), y32, rtol=1e-4, atol=1e-5)
        mh = copy.deepcopy(model).half()
        assert mh[1].numerator.dtype == torch.float16
        yh = mh(x.half())
        assert yh.dtype == torch.float16 and torch.isfinite(yh).all()
        err = (yh.double() - y64).abs().max() / y64.abs().max()
        assert err < 0.02, f"half model relative error {err:.3g}"
    # Training steps in half run end to end too (gradients in half, finite).
    mh.zero_grad()
    mh(x.half()).float().square().mean().backward()
    assert mh[1].numerator.grad.dtype == torch.float16 and torch.isfinite(mh[1].numerator.grad).all()
