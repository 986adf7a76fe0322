// Interface of the vectorised CPU bodies. rational_kernel_vec.cpp is compiled once per CPU
// capability (DEFAULT, AVX2, AVX512) into its own namespace; rational_kernel.cpp picks one at run
// time. A "run" is a stretch of memory whose elements all use the same coefficient group.
#pragma once

#include <cmath>
#include <cstdint>

#include "ops/cpu/vec_tables.h"

#include "rational_math.h"

namespace torch_rational {
namespace cpu {

struct RunConfig {
  int m;   // numerator degree
  int nb;  // number of denominator coefficients (n, or n + 1 for version C)
  kernels::Version version;
  kernels::Basis basis;
  // |x| above which the float32 vector path hands an element to the scalar float64 path, and
  // above which that path uses the scaled (1/x) power-basis form. Computed once per call (pow is
  // too slow to evaluate per run or per tile).
  double vec_threshold = INFINITY;
  double scaled_threshold = INFINITY;
};

// Coefficients of one group, in float (vector path) and double (scalar fallbacks).
struct GroupCoefs {
  const float* a;
  const float* b;
  const double* a64;
  const double* b64;
};

// The channel walk's coefficients (group_layout.h): coefficient k (a_0..a_m, then the nb
// denominator ones) of channel c at soa[k * ld + c]; the scalar fallback of a lane uses its group's
// float64 coefficients, a64 + (c / per_group) * (m + 1) and b64 + (c / per_group) * nb.
struct ChannelCoefs {
  const float* soa;
  int64_t ld;
  int64_t per_group;
  const double* a64;
  const double* b64;
};

struct VecKernelTable {
  // Return false when (m, n) has no vectorised specialisation; the caller then takes the generic
  // scalar path. grad_x may be null (input gradient not requested); acc_a/acc_b accumulate
  // (+=) the coefficient gradients of this run and may be null when not requested.
  bool (*forward)(const RunConfig&, const GroupCoefs&, const float* x, float* y, int64_t n);
  bool (*backward)(const RunConfig&, const GroupCoefs&, const float* x, const float* grad_y,
                   float* grad_x, int64_t n, double* acc_a, double* acc_b);
  // Channel walk: `rows` whole rows of C channels (x[r * C + c]). acc (may be null) holds per
  // channel m + 1 + nb float64 partials ([C][m + 1 + nb], numerator first), added to (+=).
  bool (*forward_block)(const RunConfig&, const ChannelCoefs&, const float* x, float* y, int64_t rows, int64_t C);
  bool (*backward_block)(const RunConfig&, const ChannelCoefs&, const float* x, const float* grad_y,
                         float* grad_x, int64_t rows, int64_t C, double* acc);
};

TR_DECLARE_VEC_TABLES(VecKernelTable, table)

// The table for the best capability this CPU (and ATEN_CPU_CAPABILITY, if set) allows.
const VecKernelTable& vec_kernels();

// Scalar float64 evaluation of one element (generic degrees, the large-|x| scaled path, tails).
// Adds g * dy/dcoef into acc_a/acc_b when non-null and returns dy/dx * g in *grad_x.
inline double scalar_backward_element(const RunConfig& cfg, const double* a, const double* b, double x,
                                      double g, double threshold, double* acc_a, double* acc_b,
                                      double* grad_x) {
  double da[kernels::kMaxDegree + 1];
  double db[kernels::kMaxDegree + 2];
  const bool scaled = cfg.basis == kernels::Basis::Power && std::fabs(x) > threshold;
  const bool coefs = acc_a != nullptr;
  auto out = kernels::rational_element<double>(x, a, cfg.m, b, cfg.nb, cfg.version, cfg.basis, scaled,
                                               coefs ? da : nullptr, coefs ? db : nullptr);
  if (coefs) {
    for (int j = 0; j <= cfg.m; ++j) acc_a[j] += g * da[j];
    for (int i = 0; i < cfg.nb; ++i) acc_b[i] += g * db[i];
  }
  *grad_x = g * out.dydx;
  return out.y;
}

inline double scalar_forward_element(const RunConfig& cfg, const double* a, const double* b, double x,
                                     double threshold) {
  const bool scaled = cfg.basis == kernels::Basis::Power && std::fabs(x) > threshold;
  return kernels::rational_element<double>(x, a, cfg.m, b, cfg.nb, cfg.version, cfg.basis, scaled,
                                           nullptr, nullptr)
      .y;
}

// Largest denominator power used by cfg, and the overall degree D = max(m, that).
inline int max_degree(const RunConfig& cfg) {
  const int n_top = cfg.nb - 1 + kernels::first_den_power(cfg.version);
  return cfg.m > n_top ? cfg.m : n_top;
}

}  // namespace cpu
}  // namespace torch_rational
