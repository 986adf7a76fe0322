// Iterative filter pruning (the PAU paper's lottery-ticket experiment, --prune-rounds R
// --prune-fraction F): after each training round, every convolution loses round(F * alive) of its
// still-alive filters (output channels), those with the lowest L1 norm of their weights over
// (in, kh, kw), at least one filter staying alive; then the whole network is rewound to its
// initial state and retrained with the masks applied after every optimizer step.
#pragma once

#include <torch/nn/module.h>
#include <torch/serialize/archive.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace rational_train {

// The new mask (float, 1 alive / 0 pruned, shape [out]) after one round: of the filters alive in
// `mask`, the round(fraction * alive) with the lowest sum of |weight| over all but the first
// dimension are pruned (ties: the lower index first), never the last alive one.
torch::Tensor prune_filters(const torch::Tensor& weight, const torch::Tensor& mask, double fraction);

// The masks of every Conv2d of a model (module path order). A pruned filter has its conv weight
// and bias zeroed, and the gamma and beta of the BatchNorm2d registered right after the conv (when
// it has as many features), so the channel is exactly 0 before its activation.
class FilterPruner {
 public:
  explicit FilterPruner(torch::nn::Module& model);
  // One pruning round from the current weights.
  void prune(double fraction);
  // Zeroes the pruned filters (no autograd).
  void apply();
  int64_t total_filters() const;
  int64_t alive_filters() const;
  double pruned_fraction() const;  // 1 - alive / total
  // Module paths of the convs, in the order of the masks.
  std::vector<std::string> names() const;
  // Masks as members mask0, mask1, ... of `ar`, the names in `names` (the checkpoint state).
  void save(torch::serialize::OutputArchive& ar) const;
  // Throws std::runtime_error when the archive's masks do not fit this model.
  void load(torch::serialize::InputArchive& ar, const std::vector<std::string>& names);

 private:
  struct Conv {
    std::string name;
    torch::Tensor weight, bias, bn_weight, bn_bias;  // bias / bn_* undefined when absent
    torch::Tensor mask;                              // float [out], on the weight's device
  };
  std::vector<Conv> convs_;
};

}  // namespace rational_train
