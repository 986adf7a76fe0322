"""Every op has a kernel at every dispatch key it needs: CPU, Autograd and Meta (the fake kernel of
_ops.py) always, CUDA when the library was built with CUDA. scripts/check_cuda_build.sh and
scripts/gpu_run.sh set TORCH_RATIONAL_EXPECT_CUDA=1 for the CUDA build, so a CUDA build that lost its
CUDA kernels (a glob, a CMake condition) fails here instead of falling back to an error at x.cuda()."""

import os

import pytest
import torch

import torch_rational

OPS = ["rational", "rational_backward", "era", "era_backward", "pwlu", "pwlu_backward"]
EXPECT_CUDA = os.environ.get("TORCH_RATIONAL_EXPECT_CUDA") == "1"
KEYS = ["CPU", "Autograd", "Meta"] + (["CUDA"] if EXPECT_CUDA else [])


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("op", OPS)
def test_kernel_registered(op, key):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_rational::{op}", key), (
        f"torch_rational::{op} has no {key} kernel (library: {torch_rational._ops.LIBRARY_PATH})")


def test_cuda_kernels_match_build():
    # Without the variable, a library with CUDA kernels must at least run under a CUDA torch.
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key("torch_rational::rational", "CUDA")
    if EXPECT_CUDA:
        assert has_cuda
    if has_cuda:
        assert torch.version.cuda is not None


def _family_inputs(family, device="cpu", dtype=torch.float32):
    x = torch.randn(2, 4, 3, device=device, dtype=dtype)
    if family == "rational":
        a, b = torch_rational.init_coefficients("gelu", (5, 4))
        return x, (a.to(device, dtype), b.to(device, dtype))
    if family == "era":
        return x, (torch.tensor([1.0, 0.0]), torch.tensor([[[0.5, 0.1, 0.2, 1.0]]]).squeeze(0))
    return x, (torch.linspace(-1, 1, 5), torch.tensor([-2.0, 2.0]), torch.tensor([0.1, 1.0]))


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_meta_tensors(family):
    x, coefs = _family_inputs(family)
    op = getattr(torch.ops.torch_rational, family)
    y = op(x.to("meta"), *(c.to("meta") for c in coefs))
    assert y.device.type == "meta" and y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_forward_op_has_a_batching_rule(family):
    # torch.vmap runs the op as its composite (csrc/ops/composite/) instead of the slow fallback.
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"torch_rational::{family}", "FuncTorchBatched")


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_second_derivative_exists(family):
    # The backward ops are differentiable (no silent None, no error); test_second_order.py checks values.
    x, coefs = _family_inputs(family)
    x.requires_grad_(True)
    coefs = [c.clone().requires_grad_(True) for c in coefs]
    y = getattr(torch.ops.torch_rational, family)(x, *coefs)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    assert gx.requires_grad
    # PWLU is piecewise linear in x: its gradient does not depend on x (unused, so None).
    second = torch.autograd.grad(gx.sum(), [x, *coefs], allow_unused=family == "pwlu")
    assert all(torch.isfinite(s).all() for s in second[family == "pwlu":])


@pytest.mark.parametrize("family", ["rational", "era", "pwlu"])
def test_first_derivative_unchanged_without_create_graph(family):
    x, coefs = _family_inputs(family)
    x.requires_grad_(True)
    y = getattr(torch.ops.torch_rational, family)(x, *coefs)
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert not gx.requires_grad and torch.isfinite(gx).all()
