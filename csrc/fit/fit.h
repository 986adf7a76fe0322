// Least-squares fitter and initialisation tables of the rational activations.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ops/named_functions.h"  // the named functions the fits and inits take
#include "torch_rational_export.h"

namespace torch_rational {

struct FitResult {
  at::Tensor numerator;    // (m+1,) float64
  at::Tensor denominator;  // (n,) float64, (n+1,) for version C
  double max_error;        // max |R(x) - y| over the fitted points
};

// Fits R = P/Q (given version, basis, degrees) to the points (x, y) in float64: linearised least
// squares starts, Levenberg-Marquardt on the squared error, then on mean(|r|^p) for p up to 256 (near minimax).
TORCH_RATIONAL_API FitResult fit_rational(const at::Tensor& x, const at::Tensor& y, int64_t num_degree,
                                          int64_t den_degree, const std::string& version = "A",
                                          const std::string& basis = "power");

// Fits a named function on [lo, hi] with num_points uniformly spaced points.
TORCH_RATIONAL_API FitResult fit_named(const std::string& function, int64_t num_degree, int64_t den_degree,
                                       const std::string& version = "A", const std::string& basis = "power",
                                       double lo = -3.0, double hi = 3.0, int64_t num_points = 4001);

// Init fits (modules' init=<function>, fit_range=(lo, hi)) also check the fit just outside its
// range, where pre-activations still land: a fit that is exact on [lo, hi] can still be the wrong
// function (hardswish is a parabola on [-3, 3]).
struct InitFit {
  FitResult fit;
  double outside_error;  // max |R(x) - y| on the bands outside [lo, hi]
  std::string warning;   // non-empty when outside_error is large next to the target's scale
};

// Sample points of an init fit on [lo, hi]: (4001 points inside, 2 x 400 points in the bands of a
// quarter of the width on either side).
TORCH_RATIONAL_API std::pair<at::Tensor, at::Tensor> init_fit_points(double lo, double hi);

// Fits (x, y) like fit_rational and measures the error on (x_outside, y_outside); `what` names the
// target in the warning.
TORCH_RATIONAL_API InitFit fit_init(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_outside,
                                    const at::Tensor& y_outside, int64_t num_degree, int64_t den_degree,
                                    const std::string& version, const std::string& basis,
                                    const std::string& what = "the init function");

// fit_init of a C++ function on [lo, hi] (its points from init_fit_points); warns (TORCH_WARN) if
// the fit strays outside the range.
TORCH_RATIONAL_API FitResult fit_init_function(const std::function<at::Tensor(const at::Tensor&)>& function,
                                               int64_t num_degree, int64_t den_degree, const std::string& version,
                                               const std::string& basis, double lo, double hi,
                                               const std::string& what = "the init function");

// Initial coefficients (float64) approximating `function`: from the shipped table
// (configs/rational_init.json, compiled in), else fitted on the fly on default_fit_range(function)
// (with a one-time warning per combination). function "random" gives a small random stable start.
TORCH_RATIONAL_API std::pair<at::Tensor, at::Tensor> init_coefficients(const std::string& function,
                                                                       int64_t num_degree, int64_t den_degree,
                                                                       const std::string& version = "A",
                                                                       const std::string& basis = "power",
                                                                       bool warn_if_fitted = true);

// True if (function, degrees, version, basis) is in the shipped table.
TORCH_RATIONAL_API bool has_init_table_entry(const std::string& function, int64_t num_degree, int64_t den_degree,
                                             const std::string& version, const std::string& basis);

}  // namespace torch_rational
