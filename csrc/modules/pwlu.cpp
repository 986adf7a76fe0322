#include "modules/pwlu.h"

#include <cmath>

#include "ops/named_functions.h"
#include "ops/pwlu.h"
#include "ops/pwlu_utils.h"

namespace torch_rational {
namespace nn {

namespace {

torch::Tensor init_values(const std::string& init, const torch::Tensor& x) {
  return activation_function(init, x.to(torch::kDouble));
}

}  // namespace

PWLUImpl::PWLUImpl(PWLUOptions options_) : options(std::move(options_)) { reset(); }

void PWLUImpl::reset() {
  const auto& o = options;
  TORCH_CHECK_VALUE(o.num_pieces() >= 1 && o.num_pieces() <= kPwluMaxPieces,
                    "torch_rational: num_pieces must be in [1, ", kPwluMaxPieces, "], got ", o.num_pieces());
  TORCH_CHECK_VALUE(o.num_groups() >= 1, "torch_rational: num_groups must be >= 1, got ", o.num_groups());
  TORCH_CHECK_VALUE(o.realign_steps() >= 0, "torch_rational: realign_steps must be >= 0, got ", o.realign_steps());
  TORCH_CHECK_VALUE(o.bound() > 0.0 && std::isfinite(o.bound()), "torch_rational: bound must be finite and > 0, got ",
                    o.bound());
  TORCH_CHECK_VALUE(o.momentum() >= 0.0 && o.momentum() < 1.0, "torch_rational: momentum must be in [0, 1), got ",
                    o.momentum());
  TORCH_CHECK_VALUE(is_named_function(o.init()), "torch_rational: unknown init function '", o.init(), "'");
  const int64_t g = o.num_groups(), n = o.num_pieces();
  heights = register_parameter("heights", torch::empty({g, n + 1}));
  bounds = register_parameter("bounds", torch::empty({g, 2}));
  slopes = register_parameter("slopes", torch::empty({g, 2}));
  num_realign_calls = register_buffer("num_realign_calls", torch::zeros({}, torch::kLong));
  running_mean = register_buffer("running_mean", torch::zeros({g}));
  running_std = register_buffer("running_std", torch::zeros({g}));
  aligned = register_buffer("aligned", torch::zeros({}, torch::kBool));
  cached_versions_[0] = cached_versions_[1] = -1;  // clone() copies this object, then calls reset()
  reset_parameters();
}

void PWLUImpl::set_from_init(const torch::Tensor& left_in, const torch::Tensor& right_in) {
  const auto left = left_in.to(torch::kCPU, torch::kDouble), right = right_in.to(torch::kCPU, torch::kDouble);
  const int64_t n = options.num_pieces();
  const auto steps = torch::arange(n + 1, torch::kDouble) / static_cast<double>(n);
  auto points = left.unsqueeze(1) + (right - left).unsqueeze(1) * steps.unsqueeze(0);
  points.select(1, n).copy_(right);  // exactly R, not L + (R - L) * 1 rounded
  const auto h = init_values(options.init(), points);
  // Central difference with a step well inside a piece, so a kink of init near a bound (relu at
  // 0) only shows when it is that close.
  const auto step = ((right - left) / static_cast<double>(n) * 1e-3).unsqueeze(1);
  const auto ends = torch::stack({left, right}, 1);
  const auto k =
      (init_values(options.init(), ends + step) - init_values(options.init(), ends - step)) / (2.0 * step);
  torch::NoGradGuard no_grad;
  bounds.copy_(ends);
  heights.copy_(h);
  slopes.copy_(k);
}

void PWLUImpl::reset_parameters() {
  const int64_t g = options.num_groups();
  const double b = options.bound();
  set_from_init(torch::full({g}, -b, torch::kDouble), torch::full({g}, b, torch::kDouble));
  torch::NoGradGuard no_grad;
  num_realign_calls.zero_();
  running_mean.zero_();
  running_std.fill_(b / 3.0);
  aligned.fill_(false);
}

void PWLUImpl::realign() {
  const auto mean = running_mean.detach().to(torch::kCPU, torch::kDouble);
  const auto stdv = running_std.detach().to(torch::kCPU, torch::kDouble);
  // A constant input (std 0) would give L == R; keep a small, scale-aware width instead.
  const auto half = torch::maximum(3.0 * stdv, 1e-3 * mean.abs().clamp_min(1.0));
  set_from_init(mean - half, mean + half);
  torch::NoGradGuard no_grad;
  aligned.fill_(true);
}

bool PWLUImpl::collecting() {
  if (aligned._version() != cached_versions_[0] || num_realign_calls._version() != cached_versions_[1] ||
      aligned.const_data_ptr() != cached_data_[0] || num_realign_calls.const_data_ptr() != cached_data_[1]) {
    cached_collecting_ =
        !aligned.item<bool>() && num_realign_calls.item<int64_t>() < options.realign_steps();
    cached_versions_[0] = aligned._version();
    cached_versions_[1] = num_realign_calls._version();
    cached_data_[0] = aligned.const_data_ptr();
    cached_data_[1] = num_realign_calls.const_data_ptr();
  }
  return cached_collecting_;
}

void PWLUImpl::update_statistics(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const int64_t g = options.num_groups();
  torch::Tensor flat;
  if (g > 1) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational: x must have a channel dimension when num_groups > 1");
    const int64_t dim = ((options.channel_dim() % x.dim()) + x.dim()) % x.dim();
    TORCH_CHECK_VALUE(x.size(dim) % g == 0, "torch_rational: x.size(channel_dim=", options.channel_dim(), ") = ",
                      x.size(dim), " is not divisible by the number of groups (num_groups = ", g, ")");
    flat = x.detach().movedim(dim, 0).reshape({g, -1});
  } else {
    flat = x.detach().reshape({1, -1});
  }
  flat = flat.to(torch::kDouble);
  const auto mean = flat.mean(1);
  const auto stdv = (flat - mean.unsqueeze(1)).square().mean(1).sqrt();
  if (num_realign_calls.item<int64_t>() == 0) {
    running_mean.copy_(mean);
    running_std.copy_(stdv);
  } else {
    const double m = options.momentum();
    running_mean.mul_(m).add_(mean.to(running_mean.options()), 1.0 - m);
    running_std.mul_(m).add_(stdv.to(running_std.options()), 1.0 - m);
  }
  num_realign_calls.add_(1);
  if (num_realign_calls.item<int64_t>() >= options.realign_steps()) realign();
}

torch::Tensor PWLUImpl::forward(const torch::Tensor& x) {
  if (is_training() && collecting()) {
    // An empty batch has no statistics: it does not count as a step.
    if (x.numel() > 0) update_statistics(x);
    return activation_function(options.init(), x);
  }
  return pwlu(x, heights, bounds, slopes, options.channel_dim());
}

void PWLUImpl::pretty_print(std::ostream& os) const {
  os << "torch_rational::nn::PWLU(num_pieces=" << options.num_pieces() << ", init=" << options.init()
     << ", num_groups=" << options.num_groups();
  if (options.num_groups() > 1) os << ", channel_dim=" << options.channel_dim();
  os << ", realign_steps=" << options.realign_steps();
  if (options.bound() != 3.0) os << ", bound=" << options.bound();
  os << ")";
}

}  // namespace nn
}  // namespace torch_rational
