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
  TORCH_CHECK_VALUE(o.noise() >= 0.0 && std::isfinite(o.noise()), "torch_rational: noise must be >= 0, got ",
                    o.noise());
  parse_version(o.version());
  parse_basis(o.basis());
  auto [a, b] = init_coefficients(o.init(), o.num_degree(), o.den_degree(), o.version(), o.basis());
  auto num = a.to(torch::kFloat).unsqueeze(0).repeat({o.num_groups(), 1}).contiguous();
  auto den = b.to(torch::kFloat).unsqueeze(0).repeat({o.num_groups(), 1}).contiguous();
  return {num, den};
}

void print_options(std::ostream& os, const char* name, const RationalOptions& o) {
  os << name << "(degrees=(" << o.num_degree() << ", " << o.den_degree() << "), version=" << o.version()
     << ", basis=" << o.basis() << ", init=" << o.init() << ", num_groups=" << o.num_groups();
  if (o.num_groups() > 1) os << ", channel_dim=" << o.channel_dim();
  if (o.noise() > 0) os << ", noise=" << o.noise();
  os << ")";
}

torch::Tensor forward(const RationalOptions& o, bool training, const torch::Tensor& x,
                      const torch::Tensor& numerator, const torch::Tensor& denominator) {
  const bool noisy = training && o.noise() > 0.0;
  std::optional<at::Tensor> seed;
  if (noisy) seed = rational_noise_seed();
  return rational(x, numerator, denominator, o.version(), o.basis(), o.channel_dim(), noisy ? o.noise() : 0.0,
                  seed);
}

}  // namespace detail
}  // namespace nn
}  // namespace torch_rational
