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

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <utility>

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
  // Any function to approximate instead of the named `init` (fitted on fit_range at construction;
  // reset_parameters() restores that fit).
  using InitFunction = std::function<torch::Tensor(const torch::Tensor&)>;
  TORCH_ARG(InitFunction, init_function) = nullptr;
  // Interval of the init fit; unset: the shipped table (fitted on [-3, 3]) or, for functions not in
  // it, default_fit_range(init). A warning says when the fit departs from its target just outside.
  using Range = std::optional<std::pair<double, double>>;
  TORCH_ARG(Range, fit_range) = std::nullopt;
  TORCH_ARG(int64_t, num_groups) = 1;
  TORCH_ARG(int64_t, channel_dim) = 1;
  // KAT's group-rational layer: one numerator (m+1,) shared by all num_groups groups, one
  // denominator per group (G, n). The numerator is expanded to (G, m+1) for the op, so its gradient
  // is the sum over groups.
  TORCH_ARG(bool, shared_numerator) = false;
  // RPAU: relative coefficient noise, applied in training mode only. Unset: 0.1 for RPAU, 0 otherwise.
  TORCH_ARG(std::optional<double>, noise) = std::nullopt;
  // trainable=false freezes both coefficient tensors (requires_grad false, as rational_activations
  // does; they stay parameters, so state_dict and optimisers see the same names);
  // train_numerator / train_denominator freeze one of them.
  TORCH_ARG(bool, trainable) = true;
  TORCH_ARG(bool, train_numerator) = true;
  TORCH_ARG(bool, train_denominator) = true;
};

namespace detail {
// Validates options (naming the bad one) and returns (numerator, denominator) of shape
// (G, m+1) [(m+1,) with shared_numerator] and (G, n) [(G, n+1) for version C] in float32.
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
    init_coefficients_ = p;
    numerator = this->register_parameter("numerator", p.first.clone(),
                                         options.trainable() && options.train_numerator());
    denominator = this->register_parameter("denominator", p.second.clone(),
                                           options.trainable() && options.train_denominator());
  }

  // Restores the init coefficients in place (keeps dtype and device); "random" draws afresh.
  void reset_parameters() {
    const auto p = options.init() == "random" && !options.init_function() ? detail::initial_parameters(options)
                                                                          : init_coefficients_;
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

 private:
  std::pair<torch::Tensor, torch::Tensor> init_coefficients_;  // what reset_parameters() restores
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
  explicit RPAUImpl(RationalOptions options_ = {})
      : RationalImplBase(options_.basis("power").noise(options_.noise().value_or(0.1))) {}
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
