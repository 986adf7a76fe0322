// Vectorised PWLU forward for float32 math, compiled once per CPU capability (CPU_CAPABILITY is
// DEFAULT, AVX2 or AVX512, with the matching -m flags), like rational_kernel_vec.cpp.
// The piece index is computed lane-wise and the two heights fetched with a gather; the three
// regions (left line, pieces, right line) are computed for every lane and blended.
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "ops/cpu/pwlu_kernel_vec.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {

using fVec = at::vec::Vectorized<float>;
using iVec = at::vec::Vectorized<int32_t>;

void pwlu_forward_f32(const kernels::PwluGroup<float>& p, const float* x, float* y, int64_t n) {
  const fVec left(p.left), right(p.right), inv_d(p.inv_d), k_left(p.slope_left), k_right(p.slope_right);
  const fVec y_first(p.heights[0]), y_last(p.heights[p.n]);
  const fVec zero(0.0f), top(static_cast<float>(p.n - 1));
  constexpr int64_t W = fVec::size();
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const fVec xv = fVec::loadu(x + i);
    const fVec u = (xv - left) * inv_d;
    fVec f = at::vec::minimum(at::vec::maximum(u.floor(), zero), top);
    // NaN (x NaN, or lanes outside [L, R) far away) must not reach the integer conversion: an
    // out-of-range index would make the gather read out of bounds. Those lanes are replaced below.
    f = fVec::blendv(f, zero, f.isnan());
    const iVec idx = at::vec::convert_to_int_of_same_size(f);
    const fVec y_i = at::vec::gather<sizeof(float)>(p.heights, idx);
    const fVec y_next = at::vec::gather<sizeof(float)>(p.heights + 1, idx);
    const fVec t = u - f;
    const fVec inner = y_i + t * (y_next - y_i);
    const fVec outer_left = y_first + (xv - left) * k_left;
    const fVec outer_right = y_last + (xv - right) * k_right;
    fVec out = fVec::blendv(inner, outer_left, xv < left);
    out = fVec::blendv(out, outer_right, xv >= right);
    out.store(y + i);
  }
  for (; i < n; ++i) y[i] = kernels::pwlu_forward_element<float>(p, x[i]);
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
