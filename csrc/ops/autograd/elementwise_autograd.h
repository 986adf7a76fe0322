// What the Autograd kernels of the three families share beyond the fused first derivative.
//
// Forward ops: the fused kernel and a torch::autograd::Function whose backward is the family's
// backward op, except where that cannot serve (needs_composite): inside a torch.func transform,
// whose wrapper tensors a C++ Function rejects, and in forward-mode AD, which the fused kernels do
// not implement. There the op runs as its differentiable composite (csrc/ops/composite/).
//
// Backward ops: when their result must itself be differentiable (grad mode on, i.e. create_graph=True,
// and an input that requires grad, or the cases above), the gradients are those of the composite,
// computed by torch's autograd with a graph: every derivative of every order exists. Otherwise (a
// plain backward pass runs with grad mode off) the fused backward kernel, below autograd.
#pragma once

#include <ATen/functorch/DynamicLayer.h>
#include <torch/autograd.h>

#include <array>
#include <tuple>
#include <utility>

namespace torch_rational {

template <typename... Tensors>
bool needs_composite(const Tensors&... inputs) {
  if (at::functorch::maybeCurrentDynamicLayer().has_value()) return true;
  return (... || (inputs.defined() && inputs._fw_grad(/*level=*/0).defined()));
}

// The Autograd kernel of a backward op. `fused()` calls the op below autograd; `composite(inputs)`
// evaluates the family's forward composite at the given inputs. Returns the fused op's tuple type:
// the gradient of each input whose mask entry is set, an empty (0,) tensor for the others.
template <size_t N, typename Fused, typename Composite>
auto backward_op_autograd(Fused&& fused, const at::Tensor& grad_output, std::array<at::Tensor, N> inputs,
                          const std::array<bool, N>& mask, Composite&& composite) {
  const bool differentiable =
      std::apply([&](const auto&... in) { return needs_composite(grad_output, in...); }, inputs) ||
      (at::GradMode::is_enabled() &&
       std::apply([&](const auto&... in) { return (grad_output.requires_grad() || ... || in.requires_grad()); },
                  inputs));
  if (!differentiable) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fused();
  }
  // Inputs whose gradient is asked for but that do not require grad get a leaf of their own (their
  // gradient is still wanted, it just has no history to connect to).
  torch::autograd::variable_list wrt;
  for (size_t i = 0; i < N; ++i) {
    if (!mask[i]) continue;
    if (!inputs[i].requires_grad()) inputs[i] = inputs[i].detach().requires_grad_(true);
    wrt.push_back(inputs[i]);
  }
  torch::autograd::variable_list grads;
  if (!wrt.empty()) {
    const at::Tensor y = composite(inputs);
    grads = torch::autograd::grad({y}, wrt, {grad_output}, /*retain_graph=*/true, /*create_graph=*/true,
                                  /*allow_unused=*/true);
  }
  std::array<at::Tensor, N> out;
  for (size_t i = 0, k = 0; i < N; ++i) {
    if (!mask[i]) {
      out[i] = inputs[i].new_empty({0});
      continue;
    }
    const at::Tensor& g = grads[k++];
    out[i] = g.defined() ? g : at::zeros_like(inputs[i], at::MemoryFormat::Contiguous);
  }
  return std::apply([](auto&... g) { return decltype(fused())(g...); }, out);
}

}  // namespace torch_rational
