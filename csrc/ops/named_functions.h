// The named target functions (relu, gelu, swish, ...) that the activations are initialised to and
// that the fitters approximate. Lives with the ops, not the fitter, because modules (PWLU) and the
// fitters (rational, ERA) all evaluate them.
#pragma once

#include <ATen/ATen.h>

#include <functional>
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

// The names activation_function knows, comma-separated (for the errors of a name it does not).
TORCH_RATIONAL_API const char* known_function_names();

// What a module's init is, whether the user gave a name or a function: float64 points in, values of
// the same shape out. A name is just activation_function bound to it, so modules have one code path.
using InitFunction = std::function<at::Tensor(const at::Tensor&)>;
// init_function if set, else the named function `name` (checked here, so an unknown name fails at
// construction, naming it).
TORCH_RATIONAL_API InitFunction init_function_or_named(const InitFunction& init_function, const std::string& name);
// init(x), checked: a defined tensor of x's shape, else an error naming `who` (the option).
TORCH_RATIONAL_API at::Tensor evaluate_init(const InitFunction& init, const at::Tensor& x, const std::string& who);

}  // namespace torch_rational
