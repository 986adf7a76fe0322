// The project's own rational least-squares fitter and the shipped initialisation tables.
//
// The fit is done with the project's own op (float64, autograd in C++): linearised least-squares
// starting points, L-BFGS on the mean squared error, then L-BFGS on mean(|r|^p) for growing p,
// which approaches the minimax (smallest maximum error) fit. The candidate with the smallest
// maximum error wins. Everything is deterministic.
#include "fit/fit.h"

#include <c10/util/Exception.h>
#include <torch/library.h>
#include <torch/optim/lbfgs.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <tuple>

#include "ops/rational.h"
#include "ops/rational_utils.h"

namespace torch_rational {

namespace {

struct InitEntry {
  const char* function;
  const char* version;
  const char* basis;
  int m;
  int n;
  std::vector<double> numerator;
  std::vector<double> denominator;
  double max_error;
};

const std::vector<InitEntry>& init_table() {
  static const std::vector<InitEntry> table = {
#include "fit/init_tables.inc"
  };
  return table;
}

double leaky_slope(const std::string& name, bool* ok) {
  *ok = true;
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
  *ok = false;
  return 0.0;
}

std::string canonical(const std::string& name) {
  if (name == "silu") return "swish";
  return name;
}

}  // namespace

std::vector<std::string> named_functions() {
  return {"relu",    "leaky_relu", "leaky_relu_<slope>", "swish", "silu",  "gelu",  "tanh",     "sigmoid", "elu",
          "identity", "softplus",  "mish",               "relu6", "hardswish", "hardtanh", "selu", "celu"};
}

bool is_named_function(const std::string& name) {
  bool ok;
  leaky_slope(name, &ok);
  if (ok) return true;
  static const std::set<std::string> names = {"relu",     "swish", "silu",  "gelu",      "tanh",     "sigmoid",
                                              "elu",      "identity", "softplus", "mish", "relu6", "hardswish",
                                              "hardtanh", "selu",  "celu"};
  return names.count(name) > 0;
}

at::Tensor activation_function(const std::string& name_in, const at::Tensor& x) {
  const std::string name = canonical(name_in);
  bool ok;
  const double slope = leaky_slope(name, &ok);
  if (ok) return at::leaky_relu(x, slope);
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
  TORCH_CHECK_VALUE(false, "torch_rational: unknown function (init) '", name_in,
                    "'; known: relu, leaky_relu, leaky_relu_<slope>, swish, silu, gelu, tanh, sigmoid, elu, "
                    "identity, softplus, mish, relu6, hardswish, hardtanh, selu, celu");
}

namespace {

// Basis matrix (N, D+1) in float64 from the shared recurrence.
at::Tensor basis_matrix(const at::Tensor& x, kernels::Basis basis, int D) {
  auto xc = x.to(at::kDouble).contiguous();
  const int64_t N = xc.numel();
  at::Tensor F = at::empty({N, D + 1}, xc.options());
  const double* xp = xc.data_ptr<double>();
  double* fp = F.data_ptr<double>();
  kernels::BasisValues<double> bv;
  for (int64_t i = 0; i < N; ++i) {
    kernels::eval_basis<double>(basis, xp[i], D, false, bv);
    for (int k = 0; k <= D; ++k) fp[i * (D + 1) + k] = bv.f[k];
  }
  return F;
}

at::Tensor lstsq(const at::Tensor& A, const at::Tensor& b) {
  // Column scaling keeps the normal problem well conditioned for high degrees.
  auto scale = A.abs().amax(0).clamp_min(1e-300);
  auto sol = std::get<0>(at::linalg_lstsq(A / scale, b.unsqueeze(1))).squeeze(1);
  return sol / scale;
}

struct Candidate {
  at::Tensor a, b;
};

double max_error_of(const at::Tensor& x, const at::Tensor& y, const at::Tensor& a, const at::Tensor& b,
                    const std::string& version, const std::string& basis) {
  at::NoGradGuard ng;
  auto r = rational(x, a, b, version, basis) - y;
  const double e = r.abs().max().item<double>();
  return std::isfinite(e) ? e : INFINITY;
}

// L-BFGS on mean(|r/s|^p); keeps the best (max error) parameters seen in `best`.
void refine(const at::Tensor& x, const at::Tensor& y, Candidate& c, const std::string& version,
            const std::string& basis, double p, int iters, Candidate& best, double& best_err) {
  auto a = c.a.detach().clone().requires_grad_(true);
  auto b = c.b.detach().clone().requires_grad_(true);
  const double s = std::max(max_error_of(x, y, a, b, version, basis), 1e-12);
  if (!std::isfinite(s)) return;
  torch::optim::LBFGS opt({a, b}, torch::optim::LBFGSOptions(1.0)
                                      .max_iter(iters)
                                      .max_eval(iters * 5 / 4)
                                      .tolerance_grad(1e-14)
                                      .tolerance_change(1e-16)
                                      .history_size(50)
                                      .line_search_fn("strong_wolfe"));
  auto closure = [&]() -> at::Tensor {
    opt.zero_grad();
    auto r = (rational(x, a, b, version, basis) - y) / s;
    at::Tensor loss = p == 2.0 ? r.square().mean() : r.abs().pow(p).mean();
    loss.backward();
    return loss;
  };
  try {
    opt.step(closure);
  } catch (const c10::Error&) {
    return;  // a line search that ran into a pole: keep what we had
  }
  const double e = max_error_of(x, y, a, b, version, basis);
  if (std::isfinite(e)) {
    c.a = a.detach();
    c.b = b.detach();
    if (e < best_err) {
      best_err = e;
      best = Candidate{c.a.clone(), c.b.clone()};
    }
  }
}

}  // namespace

FitResult fit_rational(const at::Tensor& x_in, const at::Tensor& y_in, int64_t m, int64_t n,
                       const std::string& version, const std::string& basis) {
  TORCH_CHECK_VALUE(m >= 0 && m <= kernels::kMaxDegree, "torch_rational.fit: numerator degree must be in [0, ",
                    kernels::kMaxDegree, "], got ", m);
  TORCH_CHECK_VALUE(n >= 1 && n <= kernels::kMaxDegree, "torch_rational.fit: denominator degree must be in [1, ",
                    kernels::kMaxDegree, "], got ", n);
  TORCH_CHECK_VALUE(x_in.dim() == 1 && y_in.sizes() == x_in.sizes() && x_in.numel() >= m + n + 2,
                    "torch_rational.fit: x and y must be 1-D of the same length (at least m+n+2 points), got ",
                    x_in.sizes(), " and ", y_in.sizes());
  const auto v = parse_version(version);
  const auto bs = parse_basis(basis);
  at::AutoGradMode grad_on(true);
  auto x = x_in.detach().to(at::kDouble).contiguous();
  auto y = y_in.detach().to(at::kDouble).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(x).all().item<bool>() && at::isfinite(y).all().item<bool>(),
                    "torch_rational.fit: x and y must be finite");
  const int k0 = kernels::first_den_power(v);
  const int nb = static_cast<int>(n) + 1 - k0;
  const int D = static_cast<int>(std::max(m, n));
  auto F = basis_matrix(x, bs, D);
  auto Fa = F.narrow(1, 0, m + 1);
  auto Fb = F.narrow(1, 1, n);  // f_1..f_n
  auto opts = x.options();

  std::vector<Candidate> starts;
  // (1) Linearised (Loeb) least squares of P - y (f_1..f_n) b = y, i.e. version N.
  {
    auto A = at::cat({Fa, -y.unsqueeze(1) * Fb}, 1);
    auto sol = lstsq(A, y);
    auto a = sol.narrow(0, 0, m + 1).clone();
    auto bN = sol.narrow(0, m + 1, n).clone();
    at::Tensor b;
    switch (v) {
      case kernels::Version::A: b = bN.abs() + 1e-3; break;
      case kernels::Version::B:
      case kernels::Version::N: b = bN; break;
      case kernels::Version::C: b = at::cat({at::full({1}, 0.9, opts), bN}); break;
    }
    if (at::isfinite(a).all().item<bool>() && at::isfinite(b).all().item<bool>()) starts.push_back({a, b});
  }
  // (2) Least-squares polynomial over a near-constant denominator.
  {
    auto a = lstsq(Fa, y);
    at::Tensor b = at::full({nb}, 1e-2, opts);
    if (v == kernels::Version::C) b[0] = 0.9;
    starts.push_back({a, b});
  }
  Candidate best{starts.back().a.clone(), starts.back().b.clone()};
  double best_err = max_error_of(x, y, best.a, best.b, version, basis);
  for (auto& c : starts) {
    const double e0 = max_error_of(x, y, c.a, c.b, version, basis);
    if (e0 < best_err) {
      best_err = e0;
      best = Candidate{c.a.clone(), c.b.clone()};
    }
    refine(x, y, c, version, basis, 2.0, 1000, best, best_err);
    for (double p : {4.0, 8.0, 16.0, 32.0, 64.0}) refine(x, y, c, version, basis, p, 300, best, best_err);
  }
  return FitResult{best.a, best.b, best_err};
}

FitResult fit_named(const std::string& function, int64_t m, int64_t n, const std::string& version,
                    const std::string& basis, double lo, double hi, int64_t num_points) {
  TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
                    "torch_rational.fit: range must be finite with lo < hi, got [", lo, ", ", hi, "]");
  TORCH_CHECK_VALUE(num_points >= m + n + 2, "torch_rational.fit: num_points must be at least m+n+2, got ",
                    num_points);
  auto x = at::linspace(lo, hi, num_points, at::TensorOptions().dtype(at::kDouble));
  auto y = activation_function(function, x);
  return fit_rational(x, y, m, n, version, basis);
}

bool has_init_table_entry(const std::string& function, int64_t m, int64_t n, const std::string& version,
                          const std::string& basis) {
  const std::string f = canonical(function);
  for (const auto& e : init_table())
    if (f == e.function && version == e.version && basis == e.basis && e.m == m && e.n == n) return true;
  return false;
}

std::pair<at::Tensor, at::Tensor> init_coefficients(const std::string& function, int64_t m, int64_t n,
                                                    const std::string& version, const std::string& basis,
                                                    bool warn_if_fitted) {
  const auto v = parse_version(version);
  parse_basis(basis);
  TORCH_CHECK_VALUE(m >= 0 && m <= kernels::kMaxDegree && n >= 1 && n <= kernels::kMaxDegree,
                    "torch_rational: degrees must satisfy 0 <= m <= ", kernels::kMaxDegree, " and 1 <= n <= ",
                    kernels::kMaxDegree, ", got (", m, ", ", n, ")");
  const int64_t nb = n + 1 - kernels::first_den_power(v);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  if (function == "random") {
    // A small random, stable start: numerator around identity, small positive denominator.
    auto a = at::randn({m + 1}, opts) * 0.1;
    if (m >= 1) a[1] += 1.0;
    auto b = at::rand({nb}, opts) * 0.1 + 0.01;
    if (v == kernels::Version::C) b[0] = 1.0;
    return {a, b};
  }
  TORCH_CHECK_VALUE(is_named_function(function), "torch_rational: unknown init function '", function,
                    "'; use one of relu, leaky_relu, leaky_relu_<slope>, swish, silu, gelu, tanh, sigmoid, elu, "
                    "identity, softplus, mish, relu6, hardswish, hardtanh, selu, celu, random");
  const std::string f = canonical(function);
  for (const auto& e : init_table()) {
    if (f == e.function && version == e.version && basis == e.basis && e.m == m && e.n == n) {
      return {at::tensor(e.numerator, opts), at::tensor(e.denominator, opts)};
    }
  }
  // Not shipped: fit on the fly, once per combination per process.
  static std::mutex mu;
  static std::map<std::tuple<std::string, int64_t, int64_t, std::string, std::string>, FitResult> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(f, m, n, version, basis);
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (warn_if_fitted)
      TORCH_WARN("torch_rational: no shipped init for ", f, " at degrees (", m, ", ", n, "), version ", version,
               ", basis ", basis, "; fitting it now on [-3, 3] (done once per process)");
    it = cache.emplace(key, fit_named(f, m, n, version, basis)).first;
  }
  return {it->second.numerator.clone(), it->second.denominator.clone()};
}

namespace {

std::tuple<at::Tensor, at::Tensor, double> fit_rational_op(const at::Tensor& x, const at::Tensor& y, int64_t m,
                                                           int64_t n, c10::string_view version,
                                                           c10::string_view basis) {
  auto r = fit_rational(x, y, m, n, std::string(version), std::string(basis));
  return {r.numerator, r.denominator, r.max_error};
}

std::tuple<at::Tensor, at::Tensor> init_coefficients_op(c10::string_view function, int64_t m, int64_t n,
                                                        c10::string_view version, c10::string_view basis) {
  // Python warns on its own side (as a Python warning), so no C++ warning here.
  auto r = init_coefficients(std::string(function), m, n, std::string(version), std::string(basis),
                             /*warn_if_fitted=*/false);
  return {r.first, r.second};
}

at::Tensor activation_function_op(c10::string_view name, const at::Tensor& x) {
  return activation_function(std::string(name), x);
}

bool has_init_table_entry_op(c10::string_view function, int64_t m, int64_t n, c10::string_view version,
                             c10::string_view basis) {
  return has_init_table_entry(std::string(function), m, n, std::string(version), std::string(basis));
}

}  // namespace

// Utility ops (not activations): exposed through the dispatcher so Python uses the same fitter and
// tables as C++. CompositeImplicitAutograd: they run above autograd, which the fitter needs.
TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("fit_rational(Tensor x, Tensor y, int num_degree, int den_degree, str version, str basis) "
        "-> (Tensor, Tensor, float)",
        &fit_rational_op);
  m.def("init_coefficients(str function, int num_degree, int den_degree, str version, str basis) "
        "-> (Tensor, Tensor)",
        &init_coefficients_op);
  m.def("has_init_table_entry(str function, int num_degree, int den_degree, str version, str basis) -> bool",
        &has_init_table_entry_op);
  m.def("activation_function(str name, Tensor x) -> Tensor", &activation_function_op);
}

}  // namespace torch_rational
