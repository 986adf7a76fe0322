#include "ops/pwlu_realign.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/named_functions.h"
#include "ops/registration.h"

namespace torch_rational {

namespace {

at::Tensor init_values(const std::string& init, const at::Tensor& x) {
  return activation_function(init, x.to(at::kDouble));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> init_parameters_impl(c10::string_view init_view,
                                                                    const at::Tensor& left_in,
                                                                    const at::Tensor& right_in, int64_t n) {
  const std::string init(init_view);
  TORCH_CHECK_VALUE(n >= 1, "torch_rational: num_pieces must be >= 1, got ", n);
  TORCH_CHECK_VALUE(left_in.dim() == 1 && right_in.sizes() == left_in.sizes(),
                    "torch_rational: left and right must be (G,) tensors of the same shape, got ", left_in.sizes(),
                    " and ", right_in.sizes());
  at::NoGradGuard no_grad;
  const auto left = left_in.to(at::kCPU, at::kDouble), right = right_in.to(at::kCPU, at::kDouble);
  const auto steps = at::arange(n + 1, at::TensorOptions().dtype(at::kDouble)) / static_cast<double>(n);
  auto points = left.unsqueeze(1) + (right - left).unsqueeze(1) * steps.unsqueeze(0);
  points.select(1, n).copy_(right);  // exactly R, not L + (R - L) * 1 rounded
  const auto heights = init_values(init, points);
  const auto step = ((right - left) / static_cast<double>(n) * 1e-3).unsqueeze(1);
  const auto ends = at::stack({left, right}, 1);
  const auto slopes = (init_values(init, ends + step) - init_values(init, ends - step)) / (2.0 * step);
  return {heights, ends, slopes};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> realigned_parameters_impl(c10::string_view init,
                                                                         const at::Tensor& running_mean,
                                                                         const at::Tensor& running_std, int64_t n) {
  at::NoGradGuard no_grad;
  const auto mean = running_mean.detach().to(at::kCPU, at::kDouble);
  const auto stdv = running_std.detach().to(at::kCPU, at::kDouble);
  const auto half = at::maximum(3.0 * stdv, 1e-3 * mean.abs().clamp_min(1.0));
  return init_parameters_impl(init, mean - half, mean + half, n);
}

void update_statistics_impl(at::Tensor& running_mean, at::Tensor& running_std, at::Tensor& num_realign_calls,
                            const at::Tensor& x, int64_t channel_dim, double momentum) {
  at::NoGradGuard no_grad;
  const int64_t g = running_mean.numel();
  TORCH_CHECK_VALUE(running_std.numel() == g, "torch_rational: running_std must have ", g, " elements, got ",
                    running_std.numel());
  TORCH_CHECK_VALUE(momentum >= 0.0 && momentum < 1.0, "torch_rational: momentum must be in [0, 1), got ", momentum);
  at::Tensor flat;
  if (g > 1) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational: x must have a channel dimension when num_groups > 1");
    const int64_t dim = ((channel_dim % x.dim()) + x.dim()) % x.dim();
    TORCH_CHECK_VALUE(x.size(dim) % g == 0, "torch_rational: x.size(channel_dim=", channel_dim, ") = ", x.size(dim),
                      " is not divisible by the number of groups (num_groups = ", g, ")");
    flat = x.detach().movedim(dim, 0).reshape({g, -1});
  } else {
    flat = x.detach().reshape({1, -1});
  }
  flat = flat.to(at::kDouble);
  const auto mean = flat.mean(1);
  const auto stdv = (flat - mean.unsqueeze(1)).square().mean(1).sqrt();
  if (num_realign_calls.item<int64_t>() == 0) {
    running_mean.copy_(mean);
    running_std.copy_(stdv);
  } else {
    running_mean.mul_(momentum).add_(mean.to(running_mean.options()), 1.0 - momentum);
    running_std.mul_(momentum).add_(stdv.to(running_std.options()), 1.0 - momentum);
  }
  num_realign_calls.add_(1);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_init_parameters(const std::string& init, const at::Tensor& left,
                                                                    const at::Tensor& right, int64_t num_pieces) {
  static const auto op = typed_op<decltype(init_parameters_impl)>("pwlu_init_parameters");
  return op.call(init, left, right, num_pieces);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_realigned_parameters(const std::string& init,
                                                                         const at::Tensor& running_mean,
                                                                         const at::Tensor& running_std,
                                                                         int64_t num_pieces) {
  static const auto op = typed_op<decltype(realigned_parameters_impl)>("pwlu_realigned_parameters");
  return op.call(init, running_mean, running_std, num_pieces);
}

void pwlu_update_statistics(at::Tensor& running_mean, at::Tensor& running_std, at::Tensor& num_realign_calls,
                            const at::Tensor& x, int64_t channel_dim, double momentum) {
  static const auto op = typed_op<decltype(update_statistics_impl)>("pwlu_update_statistics_");
  op.call(running_mean, running_std, num_realign_calls, x, channel_dim, momentum);
}

// Module-state helpers, not activations: no autograd of their own (they run under no_grad).
TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("pwlu_init_parameters(str init, Tensor left, Tensor right, int num_pieces) -> (Tensor, Tensor, Tensor)",
        &init_parameters_impl);
  m.def("pwlu_realigned_parameters(str init, Tensor running_mean, Tensor running_std, int num_pieces) "
        "-> (Tensor, Tensor, Tensor)",
        &realigned_parameters_impl);
  m.def("pwlu_update_statistics_(Tensor(a!) running_mean, Tensor(b!) running_std, Tensor(c!) num_realign_calls, "
        "Tensor x, int channel_dim, float momentum) -> ()",
        &update_statistics_impl);
}

}  // namespace torch_rational
