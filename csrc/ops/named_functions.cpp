#include "ops/named_functions.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cmath>
#include <set>

namespace torch_rational {

namespace {

// Slope of "leaky_relu" (0.01) or "leaky_relu_<slope>"; nullopt for any other name.
std::optional<double> leaky_slope(const std::string& name) {
  if (name == "leaky_relu") return 0.01;
  const std::string prefix = "leaky_relu_";
  if (name.rfind(prefix, 0) == 0) {
    const std::string tail = name.substr(prefix.size());
    try {
      size_t used = 0;
      const double s = std::stod(tail, &used);
      if (used == tail.size() && std::isfinite(s)) return s;
    } catch (const std::exception&) {
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> named_functions() {
  return {"relu",     "leaky_relu", "leaky_relu_<slope>", "swish",     "silu",     "gelu", "tanh", "sigmoid", "elu",
          "identity", "softplus",   "mish",               "relu6",     "hardswish", "hardtanh", "selu", "celu"};
}

bool is_named_function(const std::string& name) {
  if (leaky_slope(name)) return true;
  static const std::set<std::string> names = {"relu",     "swish", "silu",  "gelu",      "tanh",     "sigmoid",
                                              "elu",      "identity", "softplus", "mish", "relu6", "hardswish",
                                              "hardtanh", "selu",  "celu"};
  return names.count(name) > 0;
}

std::string canonical_function_name(const std::string& name) { return name == "silu" ? "swish" : name; }

at::Tensor activation_function(const std::string& name_in, const at::Tensor& x) {
  const std::string name = canonical_function_name(name_in);
  if (const auto slope = leaky_slope(name)) return at::leaky_relu(x, *slope);
  if (name == "relu") return at::relu(x);
  if (name == "swish") return at::silu(x);
  if (name == "gelu") return at::gelu(x);
  if (name == "tanh") return at::tanh(x);
  if (name == "sigmoid") return at::sigmoid(x);
  if (name == "elu") return at::elu(x);
  if (name == "identity") return x.clone();
  if (name == "softplus") return at::softplus(x);
  if (name == "mish") return at::mish(x);
  if (name == "relu6") return at::hardtanh(x, 0.0, 6.0);
  if (name == "hardswish") return at::hardswish(x);
  if (name == "hardtanh") return at::hardtanh(x);
  if (name == "selu") return at::selu(x);
  if (name == "celu") return at::celu(x);
  TORCH_CHECK_VALUE(false, "torch_rational: unknown function (init) '", name_in, "'; known: ", known_function_names());
}

const char* known_function_names() {
  return "relu, leaky_relu, leaky_relu_<slope>, swish, silu, gelu, tanh, sigmoid, elu, identity, softplus, mish, "
         "relu6, hardswish, hardtanh, selu, celu";
}

std::pair<double, double> default_fit_range(const std::string& name) {
  const std::string f = canonical_function_name(name);
  if (f == "relu6") return {-8.0, 8.0};      // both bends (0 and 6) inside, with room past 6
  if (f == "hardswish") return {-6.0, 6.0};  // both bends (-3 and 3) inside
  return {-3.0, 3.0};
}

InitFunction init_function_or_named(const InitFunction& init_function, const std::string& name) {
  if (init_function) return init_function;
  TORCH_CHECK_VALUE(is_named_function(name), "torch_rational: unknown init function '", name, "'; known: ",
                    known_function_names());
  return [name](const at::Tensor& x) { return activation_function(name, x); };
}

at::Tensor evaluate_init(const InitFunction& init, const at::Tensor& x, const std::string& who) {
  at::Tensor y;
  try {
    y = init(x);
  } catch (const c10::Error& e) {
    TORCH_CHECK(false, "torch_rational: ", who, " raised: ", e.what_without_backtrace());
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "torch_rational: ", who, " raised: ", e.what());
  }
  TORCH_CHECK_VALUE(y.defined() && y.sizes() == x.sizes(), "torch_rational: ", who,
                    " must return a tensor of its input's shape ", x.sizes(), ", got ",
                    y.defined() ? c10::str(y.sizes()) : std::string("an undefined tensor"));
  return y;
}

namespace {

at::Tensor activation_function_op(c10::string_view name, const at::Tensor& x) {
  return activation_function(std::string(name), x);
}

std::tuple<double, double> default_fit_range_op(c10::string_view name) {
  const auto r = default_fit_range(std::string(name));
  return {r.first, r.second};
}

}  // namespace

// Utility ops (not activations), CompositeImplicitAutograd: activation_function runs on ATen ops,
// so autograd goes through them.
TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("activation_function(str name, Tensor x) -> Tensor", &activation_function_op);
  m.def("default_fit_range(str name) -> (float, float)", &default_fit_range_op);
}

}  // namespace torch_rational
