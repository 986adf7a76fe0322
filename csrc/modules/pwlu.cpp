#include "modules/pwlu.h"

#include <cmath>

#include "ops/named_functions.h"
#include "ops/pwlu.h"
#include "ops/pwlu_realign.h"
#include "ops/pwlu_utils.h"

namespace torch_rational {
namespace nn {

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
  init_ = init_function_or_named(o.init_function(), o.init());
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

void PWLUImpl::set_parameters(const std::tuple<torch::Tensor, torch::Tensor, torch::Tensor>& p) {
  torch::NoGradGuard no_grad;
  heights.copy_(std::get<0>(p));
  bounds.copy_(std::get<1>(p));
  slopes.copy_(std::get<2>(p));
}

void PWLUImpl::reset_parameters() {
  const int64_t g = options.num_groups();
  const double b = options.bound();
  set_parameters(pwlu_init_parameters(init_, torch::full({g}, -b, torch::kDouble),
                                      torch::full({g}, b, torch::kDouble), options.num_pieces()));
  torch::NoGradGuard no_grad;
  num_realign_calls.zero_();
  running_mean.zero_();
  running_std.fill_(b / 3.0);
  aligned.fill_(false);
}

void PWLUImpl::realign() {
  set_parameters(pwlu_realigned_parameters(init_, running_mean, running_std, options.num_pieces()));
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
  pwlu_update_statistics(running_mean, running_std, num_realign_calls, x, options.channel_dim(), options.momentum());
  if (num_realign_calls.item<int64_t>() >= options.realign_steps()) realign();
}

torch::Tensor PWLUImpl::forward(const torch::Tensor& x) {
  if (is_training() && collecting()) {
    // An empty batch has no statistics: it does not count as a step.
    if (x.numel() > 0) update_statistics(x);
    return evaluate_init(init_, x, "init");
  }
  return pwlu(x, heights, bounds, slopes, options.channel_dim());
}

void PWLUImpl::pretty_print(std::ostream& os) const {
  os << "torch_rational::nn::PWLU(num_pieces=" << options.num_pieces()
     << ", init=" << (options.init_function() ? "<function>" : options.init())
     << ", num_groups=" << options.num_groups();
  if (options.num_groups() > 1) os << ", channel_dim=" << options.channel_dim();
  os << ", realign_steps=" << options.realign_steps();
  if (options.bound() != 3.0) os << ", bound=" << options.bound();
  os << ")";
}

}  // namespace nn
}  // namespace torch_rational
