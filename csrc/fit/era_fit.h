// Least-squares fitter and initialisation tables of the ERA activation
//   y = a x + b + sum_i (c_i x + d_i) / ((x - e_i)^2 + f_i^2 + eps).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "ops/named_functions.h"
#include "torch_rational_export.h"

namespace torch_rational {

struct EraFitResult {
  at::Tensor linear;     // (2,) float64: (a, b)
  at::Tensor fractions;  // (n, 4) float64: rows (c, d, e, f), f >= kEraFitMinF
  double max_error;      // max |ERA(x) - y| over the fitted points
};

// The fitter keeps |f_i| >= this, so a fitted start has no near-pole (a spike of width ~f) that
// would make training unstable; the sign of f does not matter (only f^2 enters).
constexpr double kEraFitMinF = 0.1;

// Fits ERA with n fractions to the points (x, y) in float64, deterministically: a fixed set of
// starts for (e, f), the best (a, b, c, d) for each by linear least squares, Levenberg-Marquardt on
// the squared error, then on sum |r|^p for p up to 256 (towards the minimax fit); the start with
// the smallest max error wins.
TORCH_RATIONAL_API EraFitResult fit_era(const at::Tensor& x, const at::Tensor& y, int64_t num_fractions,
                                        double eps = 1e-6);

// Fits any function (float64 points in, values of the same shape out; errors name it "init") on
// num_points uniformly spaced points of [lo, hi].
TORCH_RATIONAL_API EraFitResult fit_era_function(const InitFunction& function, int64_t num_fractions,
                                                 double lo = -3.0, double hi = 3.0, int64_t num_points = 4001,
                                                 double eps = 1e-6);

// fit_era_function of a named function (see activation_function in ops/named_functions.h).
TORCH_RATIONAL_API EraFitResult fit_era_named(const std::string& function, int64_t num_fractions, double lo = -3.0,
                                              double hi = 3.0, int64_t num_points = 4001, double eps = 1e-6);

// Initial (linear (2,), fractions (n, 4)) in float64 approximating `function` on [-3, 3]: from the
// shipped table (configs/era_init.json, compiled in), else fitted on the fly (once per process,
// with a warning). "random" gives a random stable start (a ~ 1, f in [0.5, 1.5]) from torch's
// generator.
TORCH_RATIONAL_API std::pair<at::Tensor, at::Tensor> era_init_parameters(const std::string& function,
                                                                         int64_t num_fractions,
                                                                         bool warn_if_fitted = true);

// True if (function, num_fractions) is in the shipped table.
TORCH_RATIONAL_API bool has_era_init_table_entry(const std::string& function, int64_t num_fractions);

}  // namespace torch_rational
