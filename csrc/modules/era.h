// torch::nn module of the ERA activation (Enhanced Rational Activation), for C++ training code:
//
//   auto act = torch_rational::nn::ERA(torch_rational::nn::ERAOptions(1).init("swish"));
//   auto y = act(x);                       // CPU or CUDA, autograd included
//
// y = a x + b + sum_{i=1..n} (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + eps). The ERA authors
// recommend normalised pre-activations (instance norm in CNNs, layer norm in MLPs): normalize
// "instance" / "layer" does that inside the module (parameter-free), "" (default) does not.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <functional>
#include <ostream>
#include <string>
#include <utility>

#include "torch_rational_export.h"

namespace torch_rational {
namespace nn {

struct TORCH_RATIONAL_API ERAOptions {
  ERAOptions(int64_t num_fractions = 1) : num_fractions_(num_fractions) {}
  TORCH_ARG(int64_t, num_fractions);
  // Function fitted on [-3, 3] at reset_parameters(): "swish", "relu", "leaky_relu",
  // "leaky_relu_0.3", "gelu", "tanh", "identity", ... or "random".
  TORCH_ARG(std::string, init) = "swish";
  // Any function to fit instead of the named `init` (float64 points in, values of the same shape
  // out), fitted on [-3, 3] at construction; reset_parameters() restores that fit (the module
  // keeps the fit; options keep the function).
  using InitFunction = std::function<torch::Tensor(const torch::Tensor&)>;
  TORCH_ARG(InitFunction, init_function) = nullptr;
  TORCH_ARG(int64_t, num_groups) = 1;
  TORCH_ARG(int64_t, channel_dim) = 1;
  TORCH_ARG(double, eps) = 1e-6;
  // "" (none), "instance" (per sample and channel over the spatial dims, x of shape (N, C, ...))
  // or "layer" (per position over channel_dim).
  TORCH_ARG(std::string, normalize) = "";
  // false freezes linear and fractions (requires_grad false), as RationalOptions::trainable.
  TORCH_ARG(bool, trainable) = true;
};

class TORCH_RATIONAL_API ERAImpl : public torch::nn::Cloneable<ERAImpl> {
 public:
  explicit ERAImpl(ERAOptions options_ = {});

  // Fits init_function (or looks up the named init) and registers the parameters set to that fit.
  void reset() override;
  // Restores the init parameters in place (keeps dtype and device); "random" draws afresh.
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;

  ERAOptions options;
  torch::Tensor linear;     // (G, 2): (a, b)
  torch::Tensor fractions;  // (G, n, 4): rows (c, d, e, f)

 private:
  // What reset_parameters() restores: (linear (2,), fractions (n, 4)) in float64; undefined for
  // "random".
  std::pair<torch::Tensor, torch::Tensor> init_parameters_;
};
TORCH_MODULE(ERA);

}  // namespace nn
}  // namespace torch_rational
