// Interface of the vectorised CPU bodies of the ERA op. era_kernel_vec.cpp is compiled once per
// CPU capability (DEFAULT, AVX2, AVX512); era_kernel.cpp picks one at run time. A "run" is a
// stretch of memory whose elements all use the same parameter group.
#pragma once

#include <cstdint>

#include "ops/cpu/vec_tables.h"

namespace torch_rational {
namespace cpu {

// Parameters of one group in float32: lin = (a, b), fr = n rows (c, d, e, f).
struct EraGroupParams {
  const float* lin;
  const float* fr;
  int n;
  float eps;
};

// The channel walk's parameters (group_layout.h): parameter k (a, b, then c, d, e, f per fraction)
// of channel c at soa[k * ld + c].
struct EraChannelParams {
  const float* soa;
  int64_t ld;
  int n;
  float eps;
};

struct EraVecKernelTable {
  // Return false when n has no vectorised specialisation (the caller takes the scalar path).
  // grad_x may be null (not requested); acc_lin (2) / acc_fr (4n) accumulate (+=) the parameter
  // gradients of this run in float64 and are null when not requested.
  bool (*forward)(const EraGroupParams&, const float* x, float* y, int64_t len);
  bool (*backward)(const EraGroupParams&, const float* x, const float* grad_y, float* grad_x, int64_t len,
                   double* acc_lin, double* acc_fr);
  // Channel walk: `rows` whole rows of C channels (x[r * C + c]); acc (may be null) holds per
  // channel 2 + 4n float64 partials ([C][2 + 4n]), added to (+=).
  bool (*forward_block)(const EraChannelParams&, const float* x, float* y, int64_t rows, int64_t C);
  bool (*backward_block)(const EraChannelParams&, const float* x, const float* grad_y, float* grad_x, int64_t rows,
                         int64_t C, double* acc);
};

TR_DECLARE_VEC_TABLES(EraVecKernelTable, era_table)

// The table for the best capability this CPU (and ATEN_CPU_CAPABILITY, if set) allows.
const EraVecKernelTable& era_vec_kernels();

}  // namespace cpu
}  // namespace torch_rational
