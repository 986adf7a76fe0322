#include "models.h"

#include <torch/torch.h>

#include <sstream>
#include <stdexcept>

namespace rational_train {

namespace nn = torch::nn;

std::vector<std::pair<std::string, Activation>> Net::activation_slots() {
  std::vector<std::pair<std::string, Activation>> out;
  for (auto& item : named_modules("", /*include_self=*/false))
    if (auto a = std::dynamic_pointer_cast<ActivationImpl>(item.value())) out.emplace_back(item.key(), Activation(a));
  return out;
}

namespace {

// LeNet-5 on 32x32 (PAU code: conv(+bias) without BatchNorm).
class LeNet : public Net {
 public:
  LeNet(const ModelOptions& o, const ActivationFactory& act) {
    c1 = register_module("c1", nn::Conv2d(nn::Conv2dOptions(o.in_channels, 6, 5)));
    act1 = register_module("act1", act(6));
    c3 = register_module("c3", nn::Conv2d(nn::Conv2dOptions(6, 16, 5)));
    act3 = register_module("act3", act(16));
    c5 = register_module("c5", nn::Conv2d(nn::Conv2dOptions(16, 120, 5)));
    act5 = register_module("act5", act(120));
    f6 = register_module("f6", nn::Linear(120, 84));
    act6 = register_module("act6", act(84));
    f7 = register_module("f7", nn::Linear(84, o.num_classes));
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = torch::max_pool2d(act1(c1(x)), 2);
    x = torch::max_pool2d(act3(c3(x)), 2);
    x = act5(c5(x)).flatten(1);
    return f7(act6(f6(x)));
  }
  nn::Conv2d c1{nullptr}, c3{nullptr}, c5{nullptr};
  nn::Linear f6{nullptr}, f7{nullptr};
  Activation act1{nullptr}, act3{nullptr}, act5{nullptr}, act6{nullptr};
};

// VGG-8 as in the PAU paper's code: blocks of (1, 1, 2, 2, 2) 3x3 convs (padding 1) with
// 64, 128, 256, 512, 512 channels, one activation and a 2x2 max-pool after each block, then
// Linear(512, classes). BatchNorm after every conv unless options.batch_norm is false (that code
// has none; --no-batch-norm reproduces it).
class VGG8 : public Net {
 public:
  VGG8(const ModelOptions& o, const ActivationFactory& act) {
    const int64_t convs[5] = {1, 1, 2, 2, 2};
    const int64_t widths[5] = {64, 128, 256, 512, 512};
    int64_t in = o.in_channels;
    for (int b = 0; b < 5; ++b) {
      nn::Sequential block;
      for (int64_t i = 0; i < convs[b]; ++i) {
        block->push_back(nn::Conv2d(nn::Conv2dOptions(in, widths[b], 3).padding(1)));
        if (o.batch_norm) block->push_back(nn::BatchNorm2d(widths[b]));
        in = widths[b];
      }
      block->push_back("act", act(widths[b]));
      block->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
      blocks.push_back(register_module("block" + std::to_string(b + 1), block));
    }
    classifier = register_module("classifier", nn::Linear(512, o.num_classes));
  }
  torch::Tensor forward(torch::Tensor x) override {
    for (auto& b : blocks) x = b->forward(x);
    return classifier(x.flatten(1));
  }
  std::vector<nn::Sequential> blocks;
  nn::Linear classifier{nullptr};
};

// MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project (linear), BN after each;
// residual when stride 1, through a 1x1 conv + BN when the channel count changes (CIFAR variant).
class InvertedResidualImpl : public nn::Module {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t expansion, int64_t stride, const ActivationFactory& act)
      : stride_(stride) {
    int64_t planes = expansion * in;
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(in, planes, 1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    act1 = register_module("act1", act(planes));
    conv2 = register_module("conv2",
                            nn::Conv2d(nn::Conv2dOptions(planes, planes, 3).stride(stride).padding(1).groups(planes).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    act2 = register_module("act2", act(planes));
    conv3 = register_module("conv3", nn::Conv2d(nn::Conv2dOptions(planes, out, 1).bias(false)));
    bn3 = register_module("bn3", nn::BatchNorm2d(out));
    if (stride == 1 && in != out) {
      shortcut = register_module("shortcut", nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 1).bias(false)),
                                                            nn::BatchNorm2d(out)));
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = act1(bn1(conv1(x)));
    y = act2(bn2(conv2(y)));
    y = bn3(conv3(y));
    if (stride_ != 1) return y;
    return y + (shortcut ? shortcut->forward(x) : x);
  }
  int64_t stride_;
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  Activation act1{nullptr}, act2{nullptr};
  nn::Sequential shortcut{nullptr};
};
TORCH_MODULE(InvertedResidual);

class MobileNetV2 : public Net {
 public:
  // imagenet: the network of the MobileNetV2 paper (Sandler et al. 2018, Table 2) for 224x224,
  // stride 2 in the stem and the second stage (32x down-sampling); otherwise the CIFAR variant,
  // stride 1 there (8x). The blocks are the same (see InvertedResidual).
  MobileNetV2(const ModelOptions& o, const ActivationFactory& act, bool imagenet) {
    // (expansion, out channels, blocks, stride)
    const int64_t s = imagenet ? 2 : 1;
    const int64_t cfg[7][4] = {{1, 16, 1, 1}, {6, 24, 2, s}, {6, 32, 3, 2}, {6, 64, 4, 2},
                               {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    conv1 = register_module("conv1",
                            nn::Conv2d(nn::Conv2dOptions(o.in_channels, 32, 3).stride(s).padding(1).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(32));
    act1 = register_module("act1", act(32));
    int64_t in = 32, k = 0;
    for (auto& c : cfg)
      for (int64_t i = 0; i < c[2]; ++i) {
        blocks.push_back(register_module("block" + std::to_string(++k),
                                         InvertedResidual(in, c[1], c[0], i == 0 ? c[3] : 1, act)));
        in = c[1];
      }
    conv2 = register_module("conv2", nn::Conv2d(nn::Conv2dOptions(320, 1280, 1).bias(false)));
    bn2 = register_module("bn2", nn::BatchNorm2d(1280));
    act2 = register_module("act2", act(1280));
    linear = register_module("linear", nn::Linear(1280, o.num_classes));
  }
  torch::Tensor forward(torch::Tensor x) override {
    x = act1(bn1(conv1(x)));
    for (auto& b : blocks) x = b(x);
    x = act2(bn2(conv2(x)));
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return linear(x);
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  Activation act1{nullptr}, act2{nullptr};
  std::vector<InvertedResidual> blocks;
  nn::Linear linear{nullptr};
};

}  // namespace

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"lenet", "vgg8", "mobilenetv2", "mobilenetv2_imagenet"};
  return names;
}

std::shared_ptr<Net> make_model(const std::string& name, const ModelOptions& o, const ActivationFactory& act) {
  if (name == "lenet") return std::make_shared<LeNet>(o, act);
  if (name == "vgg8") return std::make_shared<VGG8>(o, act);
  if (name == "mobilenetv2") return std::make_shared<MobileNetV2>(o, act, /*imagenet=*/false);
  if (name == "mobilenetv2_imagenet") return std::make_shared<MobileNetV2>(o, act, /*imagenet=*/true);
  std::ostringstream msg;
  msg << "unknown model '" << name << "'; known models:";
  for (auto& n : model_names()) msg << " " << n;
  throw std::invalid_argument(msg.str());
}

}  // namespace rational_train
