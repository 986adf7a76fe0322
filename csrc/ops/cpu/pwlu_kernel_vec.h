// Interface of the vectorised PWLU CPU body. pwlu_kernel_vec.cpp is compiled once per CPU
// capability (DEFAULT, AVX2, AVX512) into its own namespace; pwlu_kernel.cpp picks one at run time.
#pragma once

#include <cstdint>

#include "pwlu_math.h"

namespace torch_rational {
namespace cpu {

// y[0..n) = PWLU of x[0..n) for one group, float32 math (same formula as pwlu_forward_element).
using PwluForwardF32 = void (*)(const kernels::PwluGroup<float>& p, const float* x, float* y, int64_t n);

#define TR_DECLARE_PWLU_VEC(CAP)                                                             \
  namespace CAP {                                                                            \
  void pwlu_forward_f32(const kernels::PwluGroup<float>& p, const float* x, float* y, int64_t n); \
  }

TR_DECLARE_PWLU_VEC(DEFAULT)
TR_DECLARE_PWLU_VEC(AVX2)
TR_DECLARE_PWLU_VEC(AVX512)
#undef TR_DECLARE_PWLU_VEC

}  // namespace cpu
}  // namespace torch_rational
