// Argument parsing and checking shared by every backend of the rational ops. Each message names
// the offending argument, so a user sees which one to fix.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <string>

#include "ops/arg_checks.h"
#include "ops/rational.h"
#include "rational_math.h"

static_assert(torch_rational::kMaxDegree == torch_rational::kernels::kMaxDegree);

namespace torch_rational {

inline kernels::Version parse_version(c10::string_view v) {
  if (v == "A") return kernels::Version::A;
  if (v == "B") return kernels::Version::B;
  if (v == "C") return kernels::Version::C;
  if (v == "N") return kernels::Version::N;
  TORCH_CHECK_VALUE(false, "torch_rational: version must be one of 'A', 'B', 'C', 'N', got '",
                    std::string(v.data(), v.size()), "'");
}

inline kernels::Basis parse_basis(c10::string_view b) {
  if (b == "power") return kernels::Basis::Power;
  if (b == "chebyshev_t") return kernels::Basis::ChebyshevT;
  if (b == "chebyshev_u") return kernels::Basis::ChebyshevU;
  if (b == "hermite") return kernels::Basis::Hermite;
  if (b == "hermite_e") return kernels::Basis::HermiteE;
  if (b == "laguerre") return kernels::Basis::Laguerre;
  if (b == "legendre") return kernels::Basis::Legendre;
  TORCH_CHECK_VALUE(false,
                    "torch_rational: basis must be one of 'power', 'chebyshev_t', 'chebyshev_u', "
                    "'hermite', 'hermite_e', 'laguerre', 'legendre', got '",
                    std::string(b.data(), b.size()), "'");
}

// Everything a kernel needs to know about the shapes, once validated.
struct RationalConfig : GroupSplit {
  kernels::Version version;
  kernels::Basis basis;
  int m = 0;   // numerator degree
  int nb = 0;  // number of denominator coefficients
};

inline RationalConfig check_rational_args(const at::Tensor& x, const at::Tensor& numerator,
                                          const at::Tensor& denominator, c10::string_view version,
                                          c10::string_view basis, int64_t channel_dim, double noise,
                                          const std::optional<at::Tensor>& noise_seed,
                                          const char* op = "rational") {
  RationalConfig cfg;
  cfg.version = parse_version(version);
  cfg.basis = parse_basis(basis);
  check_supported_dtypes(op, {{"x", x}, {"numerator", numerator}, {"denominator", denominator}});
  TORCH_CHECK_VALUE(numerator.dim() == 1 || numerator.dim() == 2,
                    "torch_rational.", op, ": numerator must have shape (m+1,) or (groups, m+1), got ",
                    numerator.sizes());
  TORCH_CHECK_VALUE(denominator.dim() == 1 || denominator.dim() == 2,
                    "torch_rational.", op, ": denominator must have shape (n,) or (groups, n) [(n+1) for version "
                    "C], got ", denominator.sizes());
  TORCH_CHECK_VALUE(numerator.dim() == denominator.dim(),
                    "torch_rational.", op, ": numerator and denominator must both be 1-D or both 2-D, got ",
                    numerator.sizes(), " and ", denominator.sizes());
  const int64_t gn = numerator.dim() == 2 ? numerator.size(0) : 1;
  const int64_t gd = denominator.dim() == 2 ? denominator.size(0) : 1;
  TORCH_CHECK_VALUE(gn == gd, "torch_rational.", op, ": numerator has ", gn, " groups but denominator has ", gd);
  TORCH_CHECK_VALUE(gn >= 1, "torch_rational.", op, ": numerator must have at least one group (num_groups >= 1)");
  const int64_t na = numerator.size(-1);
  const int64_t nb = denominator.size(-1);
  TORCH_CHECK_VALUE(na >= 1 && na <= kernels::kMaxDegree + 1,
                    "torch_rational.", op, ": numerator must have between 1 and ", kernels::kMaxDegree + 1,
                    " coefficients per group (degree 0..", kernels::kMaxDegree, "), got ", na);
  const int64_t k0 = kernels::first_den_power(cfg.version);
  const int64_t min_nb = cfg.version == kernels::Version::C ? 2 : 1;
  TORCH_CHECK_VALUE(nb >= min_nb && nb - 1 + k0 <= kernels::kMaxDegree,
                    "torch_rational.", op, ": denominator must have ",
                    cfg.version == kernels::Version::C ? "n+1 (for version C)" : "n",
                    " coefficients per group with 1 <= n <= ", kernels::kMaxDegree, ", got ", nb);
  TORCH_CHECK_VALUE(noise >= 0.0 && std::isfinite(noise), "torch_rational.", op, ": noise must be finite and >= 0, got ",
                    noise);
  if (noise > 0.0) {
    TORCH_CHECK_VALUE(noise_seed.has_value() && noise_seed->defined(),
                      "torch_rational.", op, ": noise_seed (an int64 tensor with one element) is required when noise > 0");
  }
  if (noise_seed.has_value() && noise_seed->defined()) {
    TORCH_CHECK_VALUE(noise_seed->scalar_type() == at::kLong && noise_seed->numel() == 1,
                      "torch_rational.", op, ": noise_seed must be an int64 tensor with one element, got ",
                      noise_seed->scalar_type(), " with ", noise_seed->numel(), " elements");
    TORCH_CHECK_VALUE(noise_seed->device().is_cpu(), "torch_rational.", op, ": noise_seed is on ",
                      noise_seed->device(), " but must be a CPU tensor (x is on ", x.device(), ")");
  }
  check_on_device_of_x(op, x, {{"numerator", numerator}, {"denominator", denominator}});
  cfg.m = static_cast<int>(na - 1);
  cfg.nb = static_cast<int>(nb);
  // With one group channel_dim is ignored, so a bare PAU works on any shape, like nn.ReLU.
  static_cast<GroupSplit&>(cfg) = check_group_split(op, x, gn, channel_dim);
  return cfg;
}

// The arguments of rational_backward: those of rational, then grad_output (dtype, device, shape, as x).
inline RationalConfig check_rational_backward_args(const at::Tensor& grad_output, const at::Tensor& x,
                                                   const at::Tensor& numerator, const at::Tensor& denominator,
                                                   c10::string_view version, c10::string_view basis,
                                                   int64_t channel_dim, double noise,
                                                   const std::optional<at::Tensor>& noise_seed) {
  const RationalConfig cfg = check_rational_args(x, numerator, denominator, version, basis, channel_dim, noise,
                                                 noise_seed, "rational_backward");
  check_grad_output("rational_backward", grad_output, x);
  return cfg;
}

inline uint64_t read_noise_seed(double noise, const std::optional<at::Tensor>& noise_seed) {
  if (noise <= 0.0) return 0;
  return static_cast<uint64_t>(noise_seed->item<int64_t>());
}

}  // namespace torch_rational
