// LeNet-5, VGG-8 (as in the PAU paper's code) and MobileNetV2 (CIFAR variant); every activation
// slot is its own instance from the factory.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "activations.h"

namespace rational_train {

using ActivationFactory = std::function<Activation(int64_t num_channels)>;

class Net : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(torch::Tensor x) = 0;
  // (dotted module path, slot) for every activation slot, in forward order of construction.
  std::vector<std::pair<std::string, Activation>> activation_slots();
};

struct ModelOptions {
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  // VGG-8 only: BatchNorm after every conv. The PAU code has none, but without it VGG-8 diverged
  // (PAU) or did not learn (ReLU) in our first-epoch checks with the paper's Adam 2e-3.
  bool batch_norm = true;
};

const std::vector<std::string>& model_names();
// "lenet", "vgg8", "mobilenetv2"; input 32x32. Throws naming the known models for another name.
std::shared_ptr<Net> make_model(const std::string& name, const ModelOptions& options, const ActivationFactory& act);

}  // namespace rational_train
