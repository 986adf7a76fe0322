// Vectorised CPU bodies of the ERA op, compiled once per CPU capability (CPU_CAPABILITY =
// DEFAULT, AVX2 or AVX512, with the matching -m flags) like rational_kernel_vec.cpp, so
// at::vec::Vectorized<float> is 8 or 16 lanes wide and the library still runs without AVX2.
//
// The number of fractions n is a template parameter for n = 1..4 (n = 1 is the recommended ERA):
// the parameter broadcasts and the per-parameter gradient accumulators then stay in registers.
// Other n return false and take the scalar path of the caller (kernels/era_math.h).
#include <algorithm>

#include "era_math.h"
#include "ops/cpu/era_kernel_vec.h"
#include "ops/cpu/era_vec_math.h"
#include "ops/cpu/vec_lanes.h"

namespace torch_rational {
namespace cpu {
namespace CPU_CAPABILITY {
namespace era_vec {

template <int N>
void forward_run(const EraGroupParams& p, const float* x, float* y, int64_t len) {
  const VecEra<N> E(p);
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) E.forward(fVec::loadu(x + i)).store(y + i);
  if (i < len) E.forward(fVec::loadu(x + i, len - i)).store(y + i, len - i);
}

template <int N>
void backward_run(const EraGroupParams& p, const float* x, const float* g, float* gx, int64_t len, double* acc_lin,
                  double* acc_fr) {
  const VecEra<N> E(p);
  const bool coefs = acc_lin != nullptr;
  fVec acc[VecEra<N>::kAccumulators];
  for (auto& v : acc) v = fVec(0.f);
  auto flush = [&] { flush_group_accumulators<N>(acc, p.fr, acc_lin, acc_fr); };
  int pending = 0;
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    const fVec xv = fVec::loadu(x + i);
    const fVec gv = fVec::loadu(g + i);
    const fVec gxv =
        backward_step(coefs, pending, [&](auto with) { return E.template backward<decltype(with)::value>(xv, gv, acc); }, flush);
    if (gx) gxv.store(gx + i);
  }
  if (coefs) flush();
  // The tail goes through the scalar float path: zero-padded lanes could turn into 0 * inf = NaN
  // in the accumulators (x = e, f = 0, eps = 0).
  for (; i < len; ++i) {
    const float v = kernels::era_backward_element<float, double>(x[i], g[i], p.lin[0], p.fr, N, p.eps,
                                                                 acc_lin, acc_fr);
    if (gx) gx[i] = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Channel walk (walk_channel_block; the backward's walk_channel_block_backward): a vector holds
// kLanes consecutive channels of one row (fewer in the last vector of a row: padded lanes are
// neither stored nor accumulated, so a NaN there does no harm); each vector of channels has its
// own parameters and, in the backward, its own accumulators, flushed per lane, i.e. per channel.

template <int N>
void forward_block(const EraChannelParams& p, const float* x, float* y, int64_t rows, int64_t C) {
  walk_channel_block<VecEra<N>>(
      rows, C, {x, y}, [&](int64_t c, int) { return VecEra<N>(p.soa + c, p.ld, p.eps); },
      [&](const VecEra<N>& E, int64_t, int64_t o, int count) {
        store_lanes(E.forward(load_lanes(x + o, count)), y + o, count);
      });
}

template <int N>
void backward_block(const EraChannelParams& p, const float* x, const float* g, float* gx, int64_t rows, int64_t C,
                    double* acc_all) {
  // sums: (a, b), then per fraction (c, d, e, f); the f slot holds g 2 r / D, times -f at the flush.
  walk_channel_block_backward<VecEra<N>::kAccumulators>(
      rows, C, x, g, gx, acc_all,
      [&](int64_t c, int) C10_ALWAYS_INLINE_ATTRIBUTE { return VecEra<N>(p.soa + c, p.ld, p.eps); },
      [](const VecEra<N>& E, auto with, fVec* sums, fVec xv, fVec gv) C10_ALWAYS_INLINE_ATTRIBUTE {
        return E.template backward<decltype(with)::value>(xv, gv, sums);
      },
      [](const VecEra<N>& E, int k) C10_ALWAYS_INLINE_ATTRIBUTE {
        return k >= 2 && (k - 2) % 4 == 3 ? E.f[(k - 2) / 4].neg() : fVec(1.f);
      });
}

bool forward_entry(const EraGroupParams& p, const float* x, float* y, int64_t len) {
  return with_fractions(p.n, [&](auto N) { forward_run<decltype(N)::value>(p, x, y, len); });
}

bool backward_entry(const EraGroupParams& p, const float* x, const float* g, float* gx, int64_t len,
                    double* acc_lin, double* acc_fr) {
  return with_fractions(p.n, [&](auto N) { backward_run<decltype(N)::value>(p, x, g, gx, len, acc_lin, acc_fr); });
}

bool forward_block_entry(const EraChannelParams& p, const float* x, float* y, int64_t rows, int64_t C) {
  return with_fractions(p.n, [&](auto N) { forward_block<decltype(N)::value>(p, x, y, rows, C); });
}

bool backward_block_entry(const EraChannelParams& p, const float* x, const float* g, float* gx, int64_t rows,
                          int64_t C, double* acc) {
  return with_fractions(p.n, [&](auto N) { backward_block<decltype(N)::value>(p, x, g, gx, rows, C, acc); });
}

}  // namespace era_vec

const EraVecKernelTable& era_table() {
  static const EraVecKernelTable t{era_vec::forward_entry, era_vec::backward_entry, era_vec::forward_block_entry,
                                   era_vec::backward_block_entry};
  return t;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace torch_rational
