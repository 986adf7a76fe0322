// One factory for every activation rational_train knows: fixed torch activations, learnable
// baselines from plain torch ops (maxout, mixture, apl, srelu, prelu) and the project's rational
// family (pau, rpau, opau, hp1, hp2, rational; era and pwlu when their modules are built).
#pragma once

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rational_train {

struct ActivationOptions {
  // Rational family.
  int64_t num_degree = 5, den_degree = 4;
  std::string version = "A";
  std::string basis = "";  // empty: the family's own (power for pau/rpau, chebyshev_t for opau, ...)
  std::string init = "";   // empty: the family's own (leaky_relu for rationals, swish for era, relu for pwlu)
  // Groups per slot: 1 = one activation per slot (the PAU papers), -1 = one per channel, else G
  // groups of consecutive channels (G must divide the slot's channel count).
  int64_t groups = 1;
  double noise = 0.1;           // rpau: relative coefficient noise in training
  int64_t fractions = 1;        // era: n = 1 is the recommended default (1 and 2 have shipped inits)
  int64_t pieces = 16;           // pwlu
  int64_t realign_steps = 100;  // pwlu
};

void to_json(nlohmann::json& j, const ActivationOptions& o);
// Only keys present are read; unknown keys throw naming the key.
void from_json(const nlohmann::json& j, ActivationOptions& o);

// A model's activation slot: the activation module under the name "fn", plus its factory name.
class ActivationImpl : public torch::nn::Module {
 public:
  ActivationImpl(std::string type, torch::nn::AnyModule fn);
  torch::Tensor forward(const torch::Tensor& x);
  const std::string& type() const { return type_; }
  bool learnable() const { return !parameters().empty(); }
  // Evaluates the activation at grid values for channel 0 (eval mode, no grad): the input is
  // (grid.numel(), channels), channel dimension 1, like the slot sees after a Linear layer.
  torch::Tensor curve(const torch::Tensor& grid);
  int64_t channels() const { return channels_; }
  void set_channels(int64_t c) { channels_ = c; }
  // Input histogram: while recording, every input element in [lo, hi) is counted into `bins` equal
  // bins (float64 counts on the CPU; elements outside the range and NaNs are not counted).
  // start_recording clears the counts.
  void start_recording(double lo, double hi, int64_t bins);
  void stop_recording() { recording_ = false; }
  // {"edges": [bins + 1], "counts": [bins]}, or null when nothing was recorded.
  nlohmann::json input_histogram() const;

 private:
  std::string type_;
  torch::nn::AnyModule fn_;
  int64_t channels_ = 1;
  bool recording_ = false;
  double hist_lo_ = 0.0, hist_hi_ = 0.0;
  torch::Tensor hist_counts_;  // undefined until recorded
};
TORCH_MODULE(Activation);

// Every name the factory accepts.
const std::vector<std::string>& activation_names();
// Throws std::invalid_argument listing the known names for an unknown one.
Activation make_activation(const std::string& name, const ActivationOptions& options, int64_t num_channels);

}  // namespace rational_train
