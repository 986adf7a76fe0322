// torch::nn module of the PWLU (piecewise linear unit) activation, for C++ training code:
//
//   torch_rational::nn::PWLU act(torch_rational::nn::PWLUOptions(16).init("relu").num_groups(1));
//   auto y = act(x);                       // CPU or CUDA, autograd included
//
// Statistic-based realignment (as in the Python module torch_rational.PWLU): for the first
// realign_steps forward calls in training mode the module is its init function while it collects
// the running mean / std of its input per group (the first call sets them, later calls
// stat = momentum * stat + (1 - momentum) * batch_stat); then (or on realign()) it sets
// bounds = mean -/+ 3 std, heights = init at the breakpoints, slopes = init's derivative at the
// bounds, and from then on evaluates and trains the PWLU.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <functional>
#include <ostream>
#include <string>
#include <tuple>

#include "torch_rational_export.h"

namespace torch_rational {
namespace nn {

struct TORCH_RATIONAL_API PWLUOptions {
  PWLUOptions(int64_t num_pieces = 16) : num_pieces_(num_pieces) {}
  TORCH_ARG(int64_t, num_pieces);
  // Function the unit starts as: relu, leaky_relu, swish/silu, gelu, tanh, sigmoid, identity or
  // any other name torch_rational::activation_function knows.
  TORCH_ARG(std::string, init) = "relu";
  // Any function to start as instead of the named `init` (float64 points in, values of the same
  // shape out). Kept by the module: evaluated at construction, at the realignment, and as the
  // forward during the statistics phase (then on x itself, any dtype and device).
  using InitFunction = std::function<torch::Tensor(const torch::Tensor&)>;
  TORCH_ARG(InitFunction, init_function) = nullptr;
  TORCH_ARG(int64_t, num_groups) = 1;
  TORCH_ARG(int64_t, channel_dim) = 1;
  // Statistics-collecting training calls before the realignment (0: none, train from the start).
  TORCH_ARG(int64_t, realign_steps) = 100;
  // Initial half-range: parameters start as init sampled on [-bound, bound].
  TORCH_ARG(double, bound) = 3.0;
  TORCH_ARG(double, momentum) = 0.9;
};

class TORCH_RATIONAL_API PWLUImpl : public torch::nn::Cloneable<PWLUImpl> {
 public:
  explicit PWLUImpl(PWLUOptions options_ = {});

  // Registers parameters heights (G, N+1), bounds (G, 2), slopes (G, 2) (float32) and buffers
  // num_realign_calls (int64), running_mean (G), running_std (G), aligned (bool).
  void reset() override;
  // Restores the initial state in place (keeps dtype and device): init on [-bound, bound],
  // statistics and realignment reset.
  void reset_parameters();
  // bounds = running_mean -/+ 3 running_std, heights and slopes from init; ends the statistics phase.
  void realign();

  torch::Tensor forward(const torch::Tensor& x);

  void pretty_print(std::ostream& stream) const override;

  PWLUOptions options;
  torch::Tensor heights;
  torch::Tensor bounds;
  torch::Tensor slopes;
  torch::Tensor num_realign_calls;
  torch::Tensor running_mean;
  torch::Tensor running_std;
  torch::Tensor aligned;

 private:
  bool collecting();
  void update_statistics(const torch::Tensor& x);
  void set_parameters(const std::tuple<torch::Tensor, torch::Tensor, torch::Tensor>& heights_bounds_slopes);
  // options.init_function, or the named options.init as a function: the one init every path calls.
  std::function<torch::Tensor(const torch::Tensor&)> init_;
  // "Still collecting" read from the buffers once, then reused while the buffers are the same
  // storage at the same version (an in-place edit or torch::load's set_ bumps the version, a
  // set_data swaps the storage), so a CUDA module does not synchronise on every forward.
  bool cached_collecting_ = false;
  int64_t cached_versions_[2] = {-1, -1};
  const void* cached_data_[2] = {nullptr, nullptr};
};
TORCH_MODULE(PWLU);

}  // namespace nn
}  // namespace torch_rational
