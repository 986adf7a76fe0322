#include "modules/era.h"

#include "fit/era_fit.h"
#include "ops/era.h"
#include "ops/era_normalize.h"

namespace torch_rational {
namespace nn {

namespace {

void check_options(const ERAOptions& o) {
  TORCH_CHECK_VALUE(o.num_fractions() >= 1 && o.num_fractions() <= kMaxEraFractions,
                    "torch_rational::nn::ERA: num_fractions must be in [1, ", kMaxEraFractions, "], got ",
                    o.num_fractions());
  TORCH_CHECK_VALUE(o.num_groups() >= 1, "torch_rational::nn::ERA: num_groups must be >= 1, got ", o.num_groups());
  TORCH_CHECK_VALUE(o.eps() >= 0.0 && std::isfinite(o.eps()), "torch_rational::nn::ERA: eps must be finite and >= 0, got ",
                    o.eps());
  TORCH_CHECK_VALUE(o.normalize().empty() || o.normalize() == "instance" || o.normalize() == "layer",
                    "torch_rational::nn::ERA: normalize must be \"\", \"instance\" or \"layer\", got \"", o.normalize(),
                    "\"");
}

}  // namespace

ERAImpl::ERAImpl(ERAOptions options_) : options(std::move(options_)) { reset(); }

void ERAImpl::reset() {
  const auto& o = options;
  check_options(o);
  const int64_t n = o.num_fractions();
  if (o.init_function()) {
    const auto fit = fit_era_function(o.init_function(), n);
    init_parameters_ = {fit.linear, fit.fractions};
  } else if (o.init() != "random") {
    init_parameters_ = era_init_parameters(o.init(), n);
  } else {
    init_parameters_ = {};
  }
  linear = register_parameter("linear", torch::empty({o.num_groups(), 2}), o.trainable());
  fractions = register_parameter("fractions", torch::empty({o.num_groups(), n, 4}), o.trainable());
  reset_parameters();
}

void ERAImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  if (init_parameters_.first.defined()) {
    linear.copy_(init_parameters_.first.expand_as(linear));
    fractions.copy_(init_parameters_.second.expand_as(fractions));
    return;
  }
  for (int64_t g = 0; g < options.num_groups(); ++g) {  // "random": one draw per group
    const auto [lin, fr] = era_init_parameters("random", options.num_fractions());
    linear[g].copy_(lin);
    fractions[g].copy_(fr);
  }
}

torch::Tensor ERAImpl::forward(const torch::Tensor& x) {
  return normalized_era(x, linear, fractions, options.eps(), options.channel_dim(), options.normalize());
}

void ERAImpl::pretty_print(std::ostream& os) const {
  os << "torch_rational::nn::ERA(num_fractions=" << options.num_fractions() << ", init="
     << (options.init_function() ? "<function>" : options.init()) << ", num_groups=" << options.num_groups();
  if (options.num_groups() > 1 || !options.normalize().empty()) os << ", channel_dim=" << options.channel_dim();
  if (!options.normalize().empty()) os << ", normalize=" << options.normalize();
  if (options.eps() != 1e-6) os << ", eps=" << options.eps();
  if (!options.trainable()) os << ", trainable=false";
  os << ")";
}

}  // namespace nn
}  // namespace torch_rational
