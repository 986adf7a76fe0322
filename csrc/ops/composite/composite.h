// Differentiable composites of the activation ops: the same formulas as the fused kernels, written
// with ATen ops, so torch's autograd (reverse and forward mode, any order) and torch.func's batching
// rules apply to them. They serve where the fused kernels cannot:
//   - under torch.func transforms (grad, vjp, jacrev, jacfwd, hessian, vmap): the forward ops run
//     as the composite (registered at FuncTorchBatched, chosen by the Autograd kernels under grad
//     transforms), because a C++ autograd::Function cannot serve functorch's wrapper tensors;
//   - forward-mode AD (an input with a tangent): the fused ops have no jvp;
//   - the backward ops under create_graph=True: their gradients are those of the composite, with a
//     graph, so every higher derivative exists (see csrc/ops/autograd/elementwise_autograd.h).
// Math dtype as the fused kernels (float32 for half/bf16/float32 x, float64 for float64 x); the
// result is in x's dtype. What differs from the fused kernels is documented in docs/DESIGN.md
// ("Higher derivatives and torch.func"): no large-|x| rescaling, the element-wise reductions are
// torch's.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <optional>

namespace torch_rational {

at::Tensor rational_composite(const at::Tensor& x, const at::Tensor& numerator, const at::Tensor& denominator,
                              c10::string_view version, c10::string_view basis, int64_t channel_dim, double noise,
                              const std::optional<at::Tensor>& noise_seed);

at::Tensor era_composite(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                         int64_t channel_dim);

at::Tensor pwlu_composite(const at::Tensor& x, const at::Tensor& heights, const at::Tensor& bounds,
                          const at::Tensor& slopes, int64_t channel_dim);

namespace composite {

// float64 for float64 x, else float32: the fused kernels' math type.
inline at::ScalarType math_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// One value per group, (G,) (or 0-d with one group), laid out to broadcast against x: group g
// covers channels [g C/G, (g+1) C/G) along channel_dim (normalised, >= 0). With one group the
// value is 0-d, so any x shape (0-d included) broadcasts.
inline at::Tensor per_channel(const at::Tensor& per_group, const at::Tensor& x, int64_t groups,
                              int64_t channel_dim) {
  if (groups == 1) return per_group.squeeze(0);
  const int64_t channels = x.size(channel_dim);
  at::Tensor v = per_group.repeat_interleave(channels / groups, 0);  // (C,)
  std::vector<int64_t> shape(static_cast<size_t>(x.dim() - channel_dim), 1);
  shape[0] = channels;
  return v.view(shape);
}

}  // namespace composite
}  // namespace torch_rational
