#include "ops/pwlu_realign.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "ops/named_functions.h"
#include "ops/registration.h"

namespace torch_rational {

namespace {

// Columns of pwlu_init_points after the N+1 breakpoints: the central-difference points at L and R.
constexpr int64_t kDerivativePoints = 4;

at::Tensor init_points_impl(const at::Tensor& left_in, const at::Tensor& right_in, int64_t n) {
  TORCH_CHECK_VALUE(n >= 1, "torch_rational: num_pieces must be >= 1, got ", n);
  TORCH_CHECK_VALUE(left_in.dim() == 1 && right_in.sizes() == left_in.sizes(),
                    "torch_rational: left and right must be (G,) tensors of the same shape, got ", left_in.sizes(),
                    " and ", right_in.sizes());
  at::NoGradGuard no_grad;
  const auto left = left_in.detach().to(at::kCPU, at::kDouble), right = right_in.detach().to(at::kCPU, at::kDouble);
  const auto steps = at::arange(n + 1, at::TensorOptions().dtype(at::kDouble)) / static_cast<double>(n);
  auto breakpoints = left.unsqueeze(1) + (right - left).unsqueeze(1) * steps.unsqueeze(0);
  breakpoints.select(1, n).copy_(right);  // exactly R, not L + (R - L) * 1 rounded
  const auto step = ((right - left) / static_cast<double>(n) * 1e-3).unsqueeze(1);
  const auto ends = at::stack({left, left, right, right}, 1);
  const auto signs = at::tensor({-1.0, 1.0, -1.0, 1.0}, at::TensorOptions().dtype(at::kDouble));
  return at::cat({breakpoints, ends + step * signs}, 1);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> parameters_from_values_impl(const at::Tensor& points_in,
                                                                           const at::Tensor& values_in) {
  TORCH_CHECK_VALUE(points_in.dim() == 2 && points_in.size(1) >= 2 + kDerivativePoints,
                    "torch_rational: points must be (G, N+5) as pwlu_init_points gives them, got ", points_in.sizes());
  TORCH_CHECK_VALUE(values_in.sizes() == points_in.sizes(), "torch_rational: values (init at the points) must have ",
                    "the points' shape ", points_in.sizes(), ", got ", values_in.sizes());
  at::NoGradGuard no_grad;
  const auto points = points_in.detach().to(at::kCPU, at::kDouble);
  const auto values = values_in.detach().to(at::kCPU, at::kDouble);
  TORCH_CHECK_VALUE(at::isfinite(values).all().item<bool>(),
                    "torch_rational: init returned non-finite values at the PWLU's breakpoints or bounds");
  const int64_t n = points.size(1) - 1 - kDerivativePoints;
  const auto heights = values.narrow(1, 0, n + 1).clone();
  const auto bounds = at::stack({points.select(1, 0), points.select(1, n)}, 1);
  // Divided by the distance of the points init was evaluated at (not 2h): the slope of the secant
  // through the two values, whatever rounding moved the points by.
  const auto near = points.narrow(1, n + 1, kDerivativePoints), at_near = values.narrow(1, n + 1, kDerivativePoints);
  const auto lower = at::arange(0, kDerivativePoints, 2), upper = lower + 1;
  const auto slopes = (at_near.index_select(1, upper) - at_near.index_select(1, lower)) /
                      (near.index_select(1, upper) - near.index_select(1, lower));
  return {heights, bounds, slopes};
}

std::tuple<at::Tensor, at::Tensor> realigned_bounds_impl(const at::Tensor& running_mean,
                                                         const at::Tensor& running_std) {
  TORCH_CHECK_VALUE(running_mean.dim() == 1 && running_std.sizes() == running_mean.sizes(),
                    "torch_rational: running_mean and running_std must be (G,) tensors of the same shape, got ",
                    running_mean.sizes(), " and ", running_std.sizes());
  at::NoGradGuard no_grad;
  const auto mean = running_mean.detach().to(at::kCPU, at::kDouble);
  const auto stdv = running_std.detach().to(at::kCPU, at::kDouble);
  const auto half = at::maximum(3.0 * stdv, 1e-3 * mean.abs().clamp_min(1.0));
  return {mean - half, mean + half};
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

at::Tensor pwlu_init_points(const at::Tensor& left, const at::Tensor& right, int64_t num_pieces) {
  static const auto op = typed_op<decltype(init_points_impl)>("pwlu_init_points");
  return op.call(left, right, num_pieces);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_parameters_from_values(const at::Tensor& points,
                                                                           const at::Tensor& values) {
  static const auto op = typed_op<decltype(parameters_from_values_impl)>("pwlu_parameters_from_values");
  return op.call(points, values);
}

std::tuple<at::Tensor, at::Tensor> pwlu_realigned_bounds(const at::Tensor& running_mean,
                                                         const at::Tensor& running_std) {
  static const auto op = typed_op<decltype(realigned_bounds_impl)>("pwlu_realigned_bounds");
  return op.call(running_mean, running_std);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_init_parameters(const InitFunction& init, const at::Tensor& left,
                                                                    const at::Tensor& right, int64_t num_pieces) {
  at::NoGradGuard no_grad;
  const auto points = pwlu_init_points(left, right, num_pieces);
  return pwlu_parameters_from_values(points, evaluate_init(init, points, "init"));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_realigned_parameters(const InitFunction& init,
                                                                         const at::Tensor& running_mean,
                                                                         const at::Tensor& running_std,
                                                                         int64_t num_pieces) {
  const auto [left, right] = pwlu_realigned_bounds(running_mean, running_std);
  return pwlu_init_parameters(init, left, right, num_pieces);
}

void pwlu_update_statistics(at::Tensor& running_mean, at::Tensor& running_std, at::Tensor& num_realign_calls,
                            const at::Tensor& x, int64_t channel_dim, double momentum) {
  static const auto op = typed_op<decltype(update_statistics_impl)>("pwlu_update_statistics_");
  op.call(running_mean, running_std, num_realign_calls, x, channel_dim, momentum);
}

// Module-state helpers, not activations: no autograd of their own (they run under no_grad).
TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("pwlu_init_points(Tensor left, Tensor right, int num_pieces) -> Tensor", &init_points_impl);
  m.def("pwlu_parameters_from_values(Tensor points, Tensor values) -> (Tensor, Tensor, Tensor)",
        &parameters_from_values_impl);
  m.def("pwlu_realigned_bounds(Tensor running_mean, Tensor running_std) -> (Tensor, Tensor)",
        &realigned_bounds_impl);
  m.def("pwlu_update_statistics_(Tensor(a!) running_mean, Tensor(b!) running_std, Tensor(c!) num_realign_calls, "
        "Tensor x, int channel_dim, float momentum) -> ()",
        &update_statistics_impl);
}

}  // namespace torch_rational
