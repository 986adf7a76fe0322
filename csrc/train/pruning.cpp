#include "pruning.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace rational_train {

torch::Tensor prune_filters(const torch::Tensor& weight, const torch::Tensor& mask, double fraction) {
  TORCH_CHECK(weight.dim() >= 1 && mask.dim() == 1 && mask.size(0) == weight.size(0),
              "prune_filters: a mask of ", weight.size(0), " filters expected");
  const int64_t out = weight.size(0);
  auto norms_t = weight.detach().abs().reshape({out, -1}).sum(1).to(torch::kCPU, torch::kFloat64).contiguous();
  auto mask_t = mask.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  const double* norms = norms_t.data_ptr<double>();
  const double* m = mask_t.data_ptr<double>();
  std::vector<int64_t> alive;
  for (int64_t i = 0; i < out; ++i)
    if (m[i] != 0) alive.push_back(i);
  const int64_t n_alive = int64_t(alive.size());
  const int64_t n_prune = std::min<int64_t>(std::llround(fraction * double(n_alive)), std::max<int64_t>(n_alive - 1, 0));
  // Lowest norm first; equal norms: lower index first (stable sort of the ascending indices).
  std::stable_sort(alive.begin(), alive.end(), [&](int64_t a, int64_t b) { return norms[a] < norms[b]; });
  auto next = mask_t.clone();
  for (int64_t k = 0; k < n_prune; ++k) next[alive[k]] = 0.0;
  return next.to(mask.options());
}

FilterPruner::FilterPruner(torch::nn::Module& model) {
  auto modules = model.named_modules("", /*include_self=*/false);
  for (size_t i = 0; i < modules.size(); ++i) {
    auto* conv = modules[i].value()->as<torch::nn::Conv2d>();
    if (!conv) continue;
    Conv c;
    c.name = modules[i].key();
    c.weight = conv->weight;
    c.bias = conv->bias;
    const int64_t out = conv->weight.size(0);
    if (i + 1 < modules.size())
      if (auto* bn = modules[i + 1].value()->as<torch::nn::BatchNorm2d>();
          bn && bn->options.num_features() == out && bn->options.affine()) {
        c.bn_weight = bn->weight;
        c.bn_bias = bn->bias;
      }
    c.mask = torch::ones({out}, conv->weight.options().requires_grad(false));
    convs_.push_back(std::move(c));
  }
}

void FilterPruner::prune(double fraction) {
  for (auto& c : convs_) c.mask = prune_filters(c.weight, c.mask, fraction);
}

void FilterPruner::apply() {
  torch::NoGradGuard no_grad;
  for (auto& c : convs_) {
    const auto mask = c.mask.to(c.weight.device(), c.weight.scalar_type());
    std::vector<int64_t> shape(size_t(c.weight.dim()), 1);
    shape[0] = -1;
    c.weight.mul_(mask.view(shape));
    for (auto* t : {&c.bias, &c.bn_weight, &c.bn_bias})
      if (t->defined()) t->mul_(mask.to(t->device(), t->scalar_type()));
  }
}

int64_t FilterPruner::total_filters() const {
  int64_t n = 0;
  for (auto& c : convs_) n += c.mask.numel();
  return n;
}

int64_t FilterPruner::alive_filters() const {
  int64_t n = 0;
  for (auto& c : convs_) n += int64_t(c.mask.sum().item<double>());
  return n;
}

double FilterPruner::pruned_fraction() const {
  const int64_t total = total_filters();
  return total == 0 ? 0.0 : 1.0 - double(alive_filters()) / double(total);
}

std::vector<std::string> FilterPruner::names() const {
  std::vector<std::string> out;
  for (auto& c : convs_) out.push_back(c.name);
  return out;
}

void FilterPruner::save(torch::serialize::OutputArchive& ar) const {
  for (size_t i = 0; i < convs_.size(); ++i) ar.write(fmt::format("mask{}", i), convs_[i].mask.to(torch::kCPU));
}

void FilterPruner::load(torch::serialize::InputArchive& ar, const std::vector<std::string>& names) {
  if (names != this->names())
    throw std::runtime_error(fmt::format("its pruning masks are for {} convolutions, this model has {} (other names)",
                                         names.size(), convs_.size()));
  for (size_t i = 0; i < convs_.size(); ++i) {
    torch::Tensor m;
    ar.read(fmt::format("mask{}", i), m);
    if (m.dim() != 1 || m.size(0) != convs_[i].mask.size(0))
      throw std::runtime_error(fmt::format("its pruning mask of {} has the wrong shape", convs_[i].name));
    convs_[i].mask = m.to(convs_[i].mask.device(), convs_[i].mask.scalar_type());
  }
}

}  // namespace rational_train
