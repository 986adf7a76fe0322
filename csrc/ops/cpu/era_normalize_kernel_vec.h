// Interface of the fused CPU kernels of era_normalize and normalized_era (era_normalize_kernel_vec.cpp,
// compiled once per CPU capability; era_normalize.cpp picks one at run time). x is (O, R, I)
// contiguous in memory order, normalised over R for each (o, i): mean and rstd are the (O, I)
// statistics, float64.
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/cpu/era_kernel_vec.h"
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
  // ERA (one group, p.n in 1..kMaxFusedEraFractions) of the normalised x, float32, any I (I = 1
  // too): y = era((x - mean) * rstd) in one pass over x after its statistics, which are written.
  void (*era_forward)(const at::Tensor& x, const EraGroupParams& p, at::Tensor& y, at::Tensor& mean,
                      at::Tensor& rstd);
  // Its backward for grad_output g: grad_x (defined) and, when grad_params is not null, the
  // 2 + 4n float64 parameter gradients (a, b, then c, d, e, f per fraction), written.
  void (*era_backward)(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                       const EraGroupParams& p, at::Tensor& grad_x, double* grad_params);
};

// The most fractions the fused ERA of a normalised input takes (the vectorised ERA's).
constexpr int kMaxFusedEraFractions = 4;

TR_DECLARE_VEC_TABLES(EraNormalizeKernels, era_normalize_table)

// The table for the best capability this CPU (and ATEN_CPU_CAPABILITY, if set) allows.
const EraNormalizeKernels& era_normalize_kernels();

}  // namespace cpu
}  // namespace torch_rational
