// torch::nn modules of the rational activations, for C++ training code:
//
//   auto act = torch_rational::nn::PAU(torch_rational::nn::RationalOptions(5, 4).init("leaky_relu"));
//   auto y = act(x);                       // CPU or CUDA, autograd included
//
// Rational is the general module; PAU (power basis, version A), RPAU (PAU with noise in training),
// OPAU (orthogonal basis), HP1 (hermite) and HP2 (hermite_e) fix some options.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <ostream>
#include <string>

#include "torch_rational_export.h"

namespace torch_rational {
namespace nn {

struct TORCH_RATIONAL_API RationalOptions {
  RationalOptions(int64_t num_degree = 5, int64_t den_degree = 4) : num_degree_(num_degree), den_degree_(den_degree) {}
  TORCH_ARG(int64_t, num_degree);
  TORCH_ARG(int64_t, den_degree);
  TORCH_ARG(std::string, version) = "A";
  TORCH_ARG(std::string, basis) = "power";
  // Function the coefficients approximate at reset_parameters(), e.g. "leaky_relu", "relu",
  // "swish", "gelu", "tanh", "leaky_relu_0.2", or "random".
  TORCH_ARG(std::string, init) = "leaky_relu";
  TORCH_ARG(int64_t, num_groups) = 1;
  TORCH_ARG(int64_t, channel_dim) = 1;
  // RPAU: relative coefficient noise, applied in training mode only.
  TORCH_ARG(double, noise) = 0.0;
};

namespace detail {
// Validates options (naming the bad one) and returns (numerator, denominator) of shape
// (G, m+1) and (G, n) [(G, n+1) for version C] in float32.
TORCH_RATIONAL_API std::pair<torch::Tensor, torch::Tensor> initial_parameters(const RationalOptions& o);
TORCH_RATIONAL_API void print_options(std::ostream& os, const char* name, const RationalOptions& o);
TORCH_RATIONAL_API torch::Tensor forward(const RationalOptions& o, bool training, const torch::Tensor& x,
                                         const torch::Tensor& numerator, const torch::Tensor& denominator);
}  // namespace detail

template <typename Derived>
class RationalImplBase : public torch::nn::Cloneable<Derived> {
 public:
  explicit RationalImplBase(RationalOptions options_) : options(std::move(options_)) { reset(); }

  void reset() override {
    auto p = detail::initial_parameters(options);
    numerator = this->register_parameter("numerator", p.first);
    denominator = this->register_parameter("denominator", p.second);
  }

  // Restores the init coefficients in place (keeps dtype and device).
  void reset_parameters() {
    auto p = detail::initial_parameters(options);
    torch::NoGradGuard no_grad;
    numerator.copy_(p.first);
    denominator.copy_(p.second);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    return detail::forward(options, this->is_training(), x, numerator, denominator);
  }

  void pretty_print(std::ostream& stream) const override { detail::print_options(stream, name(), options); }

  virtual const char* name() const { return "torch_rational::nn::Rational"; }

  RationalOptions options;
  torch::Tensor numerator;
  torch::Tensor denominator;
};

class TORCH_RATIONAL_API RationalImpl : public RationalImplBase<RationalImpl> {
 public:
  explicit RationalImpl(RationalOptions options_ = {}) : RationalImplBase(std::move(options_)) {}
};
TORCH_MODULE(Rational);

// Padé Activation Unit: power basis, safe version A.
class TORCH_RATIONAL_API PAUImpl : public RationalImplBase<PAUImpl> {
 public:
  explicit PAUImpl(RationalOptions options_ = {}) : RationalImplBase(options_.basis("power")) {}
  const char* name() const override { return "torch_rational::nn::PAU"; }
};
TORCH_MODULE(PAU);

// Randomized PAU: every coefficient multiplied by (1 + u), u ~ U[-noise, noise], in training.
class TORCH_RATIONAL_API RPAUImpl : public RationalImplBase<RPAUImpl> {
 public:
  explicit RPAUImpl(RationalOptions options_ = RationalOptions().noise(0.1))
      : RationalImplBase(options_.basis("power")) {}
  const char* name() const override { return "torch_rational::nn::RPAU"; }
};
TORCH_MODULE(RPAU);

// Orthogonal-Padé unit (basis from the options; chebyshev_t by default).
class TORCH_RATIONAL_API OPAUImpl : public RationalImplBase<OPAUImpl> {
 public:
  explicit OPAUImpl(RationalOptions options_ = RationalOptions().basis("chebyshev_t"))
      : RationalImplBase(std::move(options_)) {}
  const char* name() const override { return "torch_rational::nn::OPAU"; }
};
TORCH_MODULE(OPAU);

// Safe Hermite-Padé units: HP-1 (physicists' Hermite) and HP-2 (probabilists' Hermite).
class TORCH_RATIONAL_API HP1Impl : public RationalImplBase<HP1Impl> {
 public:
  explicit HP1Impl(RationalOptions options_ = {}) : RationalImplBase(options_.basis("hermite")) {}
  const char* name() const override { return "torch_rational::nn::HP1"; }
};
TORCH_MODULE(HP1);

class TORCH_RATIONAL_API HP2Impl : public RationalImplBase<HP2Impl> {
 public:
  explicit HP2Impl(RationalOptions options_ = {}) : RationalImplBase(options_.basis("hermite_e")) {}
  const char* name() const override { return "torch_rational::nn::HP2"; }
};
TORCH_MODULE(HP2);

}  // namespace nn
}  // namespace torch_rational
