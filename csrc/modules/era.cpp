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

// (linear (G, 2), fractions (G, n, 4)) in float32; "random" draws each group separately.
std::pair<torch::Tensor, torch::Tensor> initial_parameters(const ERAOptions& o) {
  check_options(o);
  const int64_t G = o.num_groups(), n = o.num_fractions();
  auto linear = torch::empty({G, 2}, torch::kFloat);
  auto fractions = torch::empty({G, n, 4}, torch::kFloat);
  for (int64_t g = 0; g < G; ++g) {
    if (g == 0 || o.init() == "random") {
      auto [lin, fr] = era_init_parameters(o.init(), n);
      linear[g].copy_(lin);
      fractions[g].copy_(fr);
    } else {
      linear[g].copy_(linear[0]);
      fractions[g].copy_(fractions[0]);
    }
  }
  return {linear, fractions};
}

}  // namespace

ERAImpl::ERAImpl(ERAOptions options_) : options(std::move(options_)) { reset(); }

void ERAImpl::reset() {
  auto p = initial_parameters(options);
  linear = register_parameter("linear", p.first, options.trainable());
  fractions = register_parameter("fractions", p.second, options.trainable());
}

void ERAImpl::reset_parameters() {
  auto p = initial_parameters(options);
  torch::NoGradGuard no_grad;
  linear.copy_(p.first);
  fractions.copy_(p.second);
}

torch::Tensor ERAImpl::forward(const torch::Tensor& x) {
  return normalized_era(x, linear, fractions, options.eps(), options.channel_dim(), options.normalize());
}

void ERAImpl::pretty_print(std::ostream& os) const {
  os << "torch_rational::nn::ERA(num_fractions=" << options.num_fractions() << ", init=" << options.init()
     << ", num_groups=" << options.num_groups();
  if (options.num_groups() > 1 || !options.normalize().empty()) os << ", channel_dim=" << options.channel_dim();
  if (!options.normalize().empty()) os << ", normalize=" << options.normalize();
  if (options.eps() != 1e-6) os << ", eps=" << options.eps();
  if (!options.trainable()) os << ", trainable=false";
  os << ")";
}

}  // namespace nn
}  // namespace torch_rational
