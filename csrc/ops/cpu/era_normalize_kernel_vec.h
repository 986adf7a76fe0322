// Interface of the fused CPU kernels of era_normalize (era_normalize_kernel_vec.cpp, compiled
// once per CPU capability; era_normalize.cpp picks one at run time). x is (O, R, I) contiguous in
// memory order, normalised over R for each (o, i): mean and rstd are the (O, I) statistics.
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/cpu/vec_tables.h"

namespace torch_rational {
namespace cpu {

constexpr double kEraNormEps = 1e-5;  // as torch.nn.InstanceNorm / LayerNorm

struct EraNormalizeKernels {
  // y = (x - mean) * rstd; mean and rstd (float64 sums, in x's opmath type) are written.
  void (*middle_forward)(const at::Tensor& x, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd);
  // grad_x of the normalisation for grad_output g.
  void (*middle_backward)(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                          at::Tensor& grad_x);
};

TR_DECLARE_VEC_TABLES(EraNormalizeKernels, era_normalize_table)

// The table for the best capability this CPU (and ATEN_CPU_CAPABILITY, if set) allows.
const EraNormalizeKernels& era_normalize_kernels();

}  // namespace cpu
}  // namespace torch_rational
