// Least-squares fitter and initialisation tables of the rational activations.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "torch_rational_export.h"

namespace torch_rational {

struct FitResult {
  at::Tensor numerator;    // (m+1,) float64
  at::Tensor denominator;  // (n,) float64, (n+1,) for version C
  double max_error;        // max |R(x) - y| over the fitted points
};

// Names understood by activation_function / fit_named / init: relu, leaky_relu (slope 0.01),
// leaky_relu_<slope> (e.g. leaky_relu_0.2), swish, silu, gelu, tanh, sigmoid, elu, identity,
// softplus, mish, relu6, hardswish, hardtanh, selu, celu.
TORCH_RATIONAL_API std::vector<std::string> named_functions();
TORCH_RATIONAL_API bool is_named_function(const std::string& name);
// Evaluates the named function on x (float64 recommended). Throws naming `function` if unknown.
TORCH_RATIONAL_API at::Tensor activation_function(const std::string& name, const at::Tensor& x);

// Fits R = P/Q (given version, basis, degrees) to the points (x, y) in float64: linearised least
// squares starts, Levenberg-Marquardt on the squared error, then on mean(|r|^p) for p up to 256 (near minimax).
TORCH_RATIONAL_API FitResult fit_rational(const at::Tensor& x, const at::Tensor& y, int64_t num_degree,
                                          int64_t den_degree, const std::string& version = "A",
                                          const std::string& basis = "power");

// Fits a named function on [lo, hi] with num_points uniformly spaced points.
TORCH_RATIONAL_API FitResult fit_named(const std::string& function, int64_t num_degree, int64_t den_degree,
                                       const std::string& version = "A", const std::string& basis = "power",
                                       double lo = -3.0, double hi = 3.0, int64_t num_points = 4001);

// Initial coefficients (float64) approximating `function`: from the shipped table
// (configs/rational_init.json, compiled in), else fitted on the fly on [-3, 3] (with a one-time
// warning per combination). function "random" gives a small random stable start.
TORCH_RATIONAL_API std::pair<at::Tensor, at::Tensor> init_coefficients(const std::string& function,
                                                                       int64_t num_degree, int64_t den_degree,
                                                                       const std::string& version = "A",
                                                                       const std::string& basis = "power",
                                                                       bool warn_if_fitted = true);

// True if (function, degrees, version, basis) is in the shipped table.
TORCH_RATIONAL_API bool has_init_table_entry(const std::string& function, int64_t num_degree, int64_t den_degree,
                                             const std::string& version, const std::string& basis);

}  // namespace torch_rational
