#include "modules/rational.h"

#include "fit/fit.h"
#include "ops/rational.h"
#include "ops/rational_utils.h"

namespace torch_rational {
namespace nn {
namespace detail {

std::pair<torch::Tensor, torch::Tensor> initial_parameters(const RationalOptions& o) {
  TORCH_CHECK_VALUE(o.num_degree() >= 0 && o.num_degree() <= kernels::kMaxDegree,
                    "torch_rational: degrees: numerator degree must be in [0, ", kernels::kMaxDegree, "], got ",
                    o.num_degree());
  TORCH_CHECK_VALUE(o.den_degree() >= 1 && o.den_degree() <= kernels::kMaxDegree,
                    "torch_rational: degrees: denominator degree must be in [1, ", kernels::kMaxDegree, "], got ",
                    o.den_degree());
  TORCH_CHECK_VALUE(o.num_groups() >= 1, "torch_rational: num_groups must be >= 1, got ", o.num_groups());
  const double noise = o.noise().value_or(0.0);
  TORCH_CHECK_VALUE(noise >= 0.0 && std::isfinite(noise), "torch_rational: noise must be >= 0, got ", noise);
  parse_version(o.version());
  parse_basis(o.basis());
  at::Tensor a, b;
  if (o.init_function() || o.fit_range()) {
    TORCH_CHECK_VALUE(o.init_function() || o.init() != "random",
                      "torch_rational: fit_range needs a function to fit; init is \"random\"");
    const auto [lo, hi] = o.fit_range().value_or(default_fit_range(o.init()));
    auto target = o.init_function() ? o.init_function()
                                    : [&](const at::Tensor& x) { return activation_function(o.init(), x); };
    auto fit = fit_init_function(target, o.num_degree(), o.den_degree(), o.version(), o.basis(), lo, hi,
                                 o.init_function() ? "init_function" : o.init());
    a = fit.numerator;
    b = fit.denominator;
  } else {
    std::tie(a, b) = init_coefficients(o.init(), o.num_degree(), o.den_degree(), o.version(), o.basis());
  }
  auto num = o.shared_numerator() ? a.to(torch::kFloat).contiguous()
                                  : a.to(torch::kFloat).unsqueeze(0).repeat({o.num_groups(), 1}).contiguous();
  auto den = b.to(torch::kFloat).unsqueeze(0).repeat({o.num_groups(), 1}).contiguous();
  return {num, den};
}

void print_options(std::ostream& os, const char* name, const RationalOptions& o) {
  os << name << "(degrees=(" << o.num_degree() << ", " << o.den_degree() << "), version=" << o.version()
     << ", basis=" << o.basis() << ", init=" << (o.init_function() ? "<function>" : o.init());
  if (o.fit_range()) os << ", fit_range=(" << o.fit_range()->first << ", " << o.fit_range()->second << ")";
  os << ", num_groups=" << o.num_groups();
  if (o.num_groups() > 1) os << ", channel_dim=" << o.channel_dim();
  if (o.shared_numerator()) os << ", shared_numerator=true";
  if (o.noise().value_or(0.0) > 0) os << ", noise=" << *o.noise();
  if (!o.trainable()) os << ", trainable=false";
  if (o.trainable() && !o.train_numerator()) os << ", train_numerator=false";
  if (o.trainable() && !o.train_denominator()) os << ", train_denominator=false";
  os << ")";
}

torch::Tensor forward(const RationalOptions& o, bool training, const torch::Tensor& x,
                      const torch::Tensor& numerator, const torch::Tensor& denominator) {
  const double noise = o.noise().value_or(0.0);
  const bool noisy = training && noise > 0.0;
  std::optional<at::Tensor> seed;
  if (noisy) seed = rational_noise_seed();
  // shared_numerator: the expand is a view, and autograd sums the (G, m+1) gradient into (m+1,).
  const auto num = o.shared_numerator() ? numerator.expand({denominator.size(0), numerator.size(-1)}) : numerator;
  return rational(x, num, denominator, o.version(), o.basis(), o.channel_dim(), noisy ? noise : 0.0, seed);
}

}  // namespace detail
}  // namespace nn
}  // namespace torch_rational
