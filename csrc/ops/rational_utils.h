// Argument parsing and checking shared by every backend of the rational ops. Each message names
// the offending argument, so a user sees which one to fix.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <string>

#include "rational_math.h"

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
struct RationalConfig {
  kernels::Version version;
  kernels::Basis basis;
  int64_t groups = 1;
  int m = 0;   // numerator degree
  int nb = 0;  // number of denominator coefficients
  int64_t channel_dim = -1;  // normalised; -1 when groups == 1
  int64_t channels = 1;
  int64_t channels_per_group = 1;
};

inline RationalConfig check_rational_args(const at::Tensor& x, const at::Tensor& numerator,
                                          const at::Tensor& denominator, c10::string_view version,
                                          c10::string_view basis, int64_t channel_dim, double noise,
                                          const std::optional<at::Tensor>& noise_seed) {
  RationalConfig cfg;
  cfg.version = parse_version(version);
  cfg.basis = parse_basis(basis);
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()),
                   "torch_rational: x must be a floating point tensor (float16, bfloat16, float32, "
                   "float64), got ", x.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(numerator.scalar_type()),
                   "torch_rational: numerator must be a floating point tensor, got ", numerator.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(denominator.scalar_type()),
                   "torch_rational: denominator must be a floating point tensor, got ",
                   denominator.scalar_type());
  TORCH_CHECK_VALUE(numerator.dim() == 1 || numerator.dim() == 2,
                    "torch_rational: numerator must have shape (m+1,) or (groups, m+1), got ",
                    numerator.sizes());
  TORCH_CHECK_VALUE(denominator.dim() == 1 || denominator.dim() == 2,
                    "torch_rational: denominator must have shape (n,) or (groups, n) [(n+1) for version "
                    "C], got ", denominator.sizes());
  TORCH_CHECK_VALUE(numerator.dim() == denominator.dim(),
                    "torch_rational: numerator and denominator must both be 1-D or both 2-D, got ",
                    numerator.sizes(), " and ", denominator.sizes());
  const int64_t gn = numerator.dim() == 2 ? numerator.size(0) : 1;
  const int64_t gd = denominator.dim() == 2 ? denominator.size(0) : 1;
  TORCH_CHECK_VALUE(gn == gd, "torch_rational: numerator has ", gn, " groups but denominator has ", gd);
  TORCH_CHECK_VALUE(gn >= 1, "torch_rational: numerator must have at least one group (num_groups >= 1)");
  const int64_t na = numerator.size(-1);
  const int64_t nb = denominator.size(-1);
  TORCH_CHECK_VALUE(na >= 1 && na <= kernels::kMaxDegree + 1,
                    "torch_rational: numerator must have between 1 and ", kernels::kMaxDegree + 1,
                    " coefficients per group (degree 0..", kernels::kMaxDegree, "), got ", na);
  const int64_t k0 = kernels::first_den_power(cfg.version);
  const int64_t min_nb = cfg.version == kernels::Version::C ? 2 : 1;
  TORCH_CHECK_VALUE(nb >= min_nb && nb - 1 + k0 <= kernels::kMaxDegree,
                    "torch_rational: denominator must have ",
                    cfg.version == kernels::Version::C ? "n+1 (for version C)" : "n",
                    " coefficients per group with 1 <= n <= ", kernels::kMaxDegree, ", got ", nb);
  TORCH_CHECK_VALUE(noise >= 0.0 && std::isfinite(noise), "torch_rational: noise must be finite and >= 0, got ",
                    noise);
  if (noise > 0.0) {
    TORCH_CHECK_VALUE(noise_seed.has_value() && noise_seed->defined(),
                      "torch_rational: noise_seed (an int64 tensor with one element) is required when noise > 0");
  }
  if (noise_seed.has_value() && noise_seed->defined()) {
    TORCH_CHECK_VALUE(noise_seed->scalar_type() == at::kLong && noise_seed->numel() == 1,
                      "torch_rational: noise_seed must be an int64 tensor with one element, got ",
                      noise_seed->scalar_type(), " with ", noise_seed->numel(), " elements");
    TORCH_CHECK_VALUE(noise_seed->device().is_cpu(), "torch_rational: noise_seed must be a CPU tensor");
  }
  TORCH_CHECK_VALUE(numerator.device() == x.device(), "torch_rational: numerator is on ", numerator.device(),
                    " but x is on ", x.device());
  TORCH_CHECK_VALUE(denominator.device() == x.device(), "torch_rational: denominator is on ",
                    denominator.device(), " but x is on ", x.device());
  cfg.groups = gn;
  cfg.m = static_cast<int>(na - 1);
  cfg.nb = static_cast<int>(nb);
  if (gn > 1) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational: x must have a channel dimension when num_groups > 1");
    TORCH_CHECK_INDEX(channel_dim >= -x.dim() && channel_dim < x.dim(), "torch_rational: channel_dim ",
                      channel_dim, " is out of range for x with ", x.dim(), " dimensions");
    cfg.channel_dim = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
    cfg.channels = x.size(cfg.channel_dim);
    TORCH_CHECK_VALUE(cfg.channels % gn == 0, "torch_rational: x.size(channel_dim=", channel_dim, ") = ",
                      cfg.channels, " is not divisible by the number of groups (num_groups = ", gn, ")");
    cfg.channels_per_group = cfg.channels / gn;
  }
  // With one group channel_dim is ignored, so a bare PAU works on any shape, like nn.ReLU.
  return cfg;
}

inline uint64_t read_noise_seed(double noise, const std::optional<at::Tensor>& noise_seed) {
  if (noise <= 0.0) return 0;
  return static_cast<uint64_t>(noise_seed->item<int64_t>());
}

}  // namespace torch_rational
