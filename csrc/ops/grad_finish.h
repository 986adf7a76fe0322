// The last step of every backward (CPU now; the CUDA glue can include it too): the parameter
// gradients, reduced per group into one float64 table [G][K], are cut into the op's parameters,
// each shaped and typed like the parameter it belongs to.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
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

}  // namespace torch_rational
