// The named target functions (relu, gelu, swish, ...) that the activations are initialised to and
// that the fitters approximate. Lives with the ops, not the fitter, because modules (PWLU) and the
// fitters (rational, ERA) all evaluate them.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>
#include <vector>

#include "torch_rational_export.h"

namespace torch_rational {

// Names understood by activation_function / fit_named / init: relu, leaky_relu (slope 0.01),
// leaky_relu_<slope> (e.g. leaky_relu_0.2), swish, silu, gelu, tanh, sigmoid, elu, identity,
// softplus, mish, relu6, hardswish, hardtanh, selu, celu.
TORCH_RATIONAL_API std::vector<std::string> named_functions();
TORCH_RATIONAL_API bool is_named_function(const std::string& name);
// The name the tables use ("silu" -> "swish"; every other name unchanged).
TORCH_RATIONAL_API std::string canonical_function_name(const std::string& name);
// Evaluates the named function on x (float64 recommended). Throws naming `function` if unknown.
TORCH_RATIONAL_API at::Tensor activation_function(const std::string& name, const at::Tensor& x);

// Interval an init fit of the named function uses unless told otherwise: [-3, 3], where
// pre-activations mostly lie, widened for functions whose shape changes outside it (relu6 bends at
// 6; hardswish is exactly the quadratic x(x+3)/6 on [-3, 3], so a fit there learns a parabola).
TORCH_RATIONAL_API std::pair<double, double> default_fit_range(const std::string& name);

}  // namespace torch_rational
