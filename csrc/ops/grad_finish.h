// The last step of every backward, CPU and CUDA: the parameter gradients, reduced per group into
// one table [G][K] (float64 on the CPU, the math dtype on CUDA), are cut into the op's parameters,
// each shaped, typed and placed like the parameter it belongs to.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace torch_rational {

// The per-group sums as a float64 (G, K) CPU tensor (copied out of `sums`).
inline at::Tensor group_grad_table(const std::vector<double>& sums, int64_t groups, int64_t K) {
  at::Tensor t = at::empty({groups, K}, at::TensorOptions().dtype(at::kDouble));
  std::copy(sums.begin(), sums.end(), t.data_ptr<double>());
  return t;
}

// Columns [start, start + len) of the (G, K) table, with param's shape, dtype and device.
inline at::Tensor param_grad(const at::Tensor& table, int64_t start, int64_t len, const at::Tensor& param) {
  return table.narrow(1, start, len).reshape(param.sizes()).to(param.device(), param.scalar_type()).contiguous();
}

// One parameter of a backward: whether its gradient is wanted, the parameter, where its gradient goes.
struct ParamGrad {
  bool wanted;
  const at::Tensor& param;
  at::Tensor& grad;
};

// Cuts the (G, K) table into consecutive column blocks, one per parameter in order (params[i] takes
// params[i].numel() / G columns), and sets each wanted gradient. An undefined table (no parameter
// gradient asked for) leaves every gradient as it is.
inline void cut_param_grads(const at::Tensor& table, std::initializer_list<ParamGrad> params) {
  if (!table.defined()) return;
  int64_t start = 0;
  for (const ParamGrad& p : params) {
    const int64_t len = p.param.numel() / table.size(0);
    if (p.wanted) p.grad = param_grad(table, start, len, p.param);
    start += len;
  }
}

}  // namespace torch_rational
