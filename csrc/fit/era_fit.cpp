// The ERA fitter and the shipped ERA initialisation tables.
//
// The fit (float64, single-threaded plain C++: deterministic and bitwise reproducible):
//   1. Starts for the nonlinear parameters (e_i, f_i): a fixed grid over the range of x (n = 1: 7
//      centres x 4 widths; n = 2: all pairs of 5 centres x 3 widths; plus, for every n, the n
//      centres spread evenly over 3 fractions of the range x 3 widths).
//   2. Per start: (a, b, c_i, d_i) by linear least squares (y is linear in them for fixed e, f),
//      Levenberg-Marquardt on the squared error (100 steps), then LM on sum |r/s|^p for
//      p = 3 ... 256 (10 steps each, s = max error at stage entry), which approaches the minimax
//      fit; a stage is kept only if the max error did not grow. |f_i| >= kEraFitMinF by projection.
//   3. The start with the smallest max error on the points wins.
// The problems are tiny (N points x 2 + 4n parameters), so the normal equations are formed and
// solved by Cholesky directly, with Marquardt's diagonal scaling.
#include "fit/era_fit.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "era_math.h"
#include "fit/fit.h"

namespace torch_rational {

namespace {

struct EraInitEntry {
  const char* function;
  int n;
  std::vector<double> linear;
  std::vector<double> fractions;
  double max_error;
};

const std::vector<EraInitEntry>& era_init_table() {
  static const std::vector<EraInitEntry> table = {
#include "fit/era_init_tables.inc"
  };
  return table;
}


constexpr int kItersL2 = 100;
constexpr int kItersP = 10;
constexpr double kPSchedule[] = {3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};
constexpr double kLMRelTol = 1e-12;

struct Problem {
  const double* x;
  const double* y;
  int64_t N;
  int n;
  int P;  // 2 + 4n
  double eps;
};

// Model value at x; fills the Jacobian row J (P entries) when non-null.
inline double model(const Problem& pr, const double* th, double x, double* J) {
  double y = th[0] * x + th[1];
  if (J) {
    J[0] = x;
    J[1] = 1.0;
  }
  for (int i = 0; i < pr.n; ++i) {
    const double* q = th + 2 + 4 * i;
    const double u = x - q[2];
    const double inv = 1.0 / (u * u + q[3] * q[3] + pr.eps);
    const double r = (q[0] * x + q[1]) * inv;
    y += r;
    if (J) {
      J[2 + 4 * i] = x * inv;
      J[3 + 4 * i] = inv;
      J[4 + 4 * i] = 2.0 * u * r * inv;
      J[5 + 4 * i] = -2.0 * q[3] * r * inv;
    }
  }
  return y;
}

double max_error(const Problem& pr, const std::vector<double>& th) {
  double e = 0.0;
  for (int64_t k = 0; k < pr.N; ++k) {
    const double r = std::fabs(model(pr, th.data(), pr.x[k], nullptr) - pr.y[k]);
    if (!(r <= e)) e = r;  // also catches NaN
  }
  return std::isfinite(e) ? e : INFINITY;
}

// Solves A z = b in place (A: P x P symmetric, row-major) by Cholesky; false if not positive definite.
bool cholesky_solve(std::vector<double> A, std::vector<double>& b, int P) {
  for (int j = 0; j < P; ++j) {
    double s = A[j * P + j];
    for (int k = 0; k < j; ++k) s -= A[j * P + k] * A[j * P + k];
    if (!(s > 0.0) || !std::isfinite(s)) return false;
    const double l = std::sqrt(s);
    A[j * P + j] = l;
    for (int i = j + 1; i < P; ++i) {
      double t = A[i * P + j];
      for (int k = 0; k < j; ++k) t -= A[i * P + k] * A[j * P + k];
      A[i * P + j] = t / l;
    }
  }
  for (int i = 0; i < P; ++i) {
    double t = b[i];
    for (int k = 0; k < i; ++k) t -= A[i * P + k] * b[k];
    b[i] = t / A[i * P + i];
  }
  for (int i = P - 1; i >= 0; --i) {
    double t = b[i];
    for (int k = i + 1; k < P; ++k) t -= A[k * P + i] * b[k];
    b[i] = t / A[i * P + i];
  }
  return true;
}

// For fixed (e_i, f_i) the model is linear in (a, b, c_i, d_i): solve that least-squares problem
// (normal equations with unit-diagonal scaling and a tiny ridge, so it always has a solution).
void best_linear(const Problem& pr, std::vector<double>& th) {
  const int L = 2 + 2 * pr.n;
  std::vector<double> A(L * L, 0.0), rhs(L, 0.0), row(L);
  for (int64_t k = 0; k < pr.N; ++k) {
    const double x = pr.x[k];
    row[0] = x;
    row[1] = 1.0;
    for (int i = 0; i < pr.n; ++i) {
      const double u = x - th[4 + 4 * i];
      const double f = th[5 + 4 * i];
      const double inv = 1.0 / (u * u + f * f + pr.eps);
      row[2 + 2 * i] = x * inv;
      row[3 + 2 * i] = inv;
    }
    for (int i = 0; i < L; ++i) {
      rhs[i] += row[i] * pr.y[k];
      for (int j = 0; j <= i; ++j) A[i * L + j] += row[i] * row[j];
    }
  }
  std::vector<double> d(L);
  for (int i = 0; i < L; ++i) d[i] = std::sqrt(std::max(A[i * L + i], 1e-300));
  for (int i = 0; i < L; ++i) {
    for (int j = 0; j <= i; ++j) {
      A[i * L + j] /= d[i] * d[j];
      A[j * L + i] = A[i * L + j];
    }
    A[i * L + i] += 1e-12;
    rhs[i] /= d[i];
  }
  if (!cholesky_solve(A, rhs, L)) return;
  th[0] = rhs[0] / d[0];
  th[1] = rhs[1] / d[1];
  for (int i = 0; i < pr.n; ++i) {
    th[2 + 4 * i] = rhs[2 + 2 * i] / d[2 + 2 * i];
    th[3 + 4 * i] = rhs[3 + 2 * i] / d[3 + 2 * i];
  }
}

void project(const Problem& pr, std::vector<double>& th) {
  for (int i = 0; i < pr.n; ++i) th[5 + 4 * i] = std::max(std::fabs(th[5 + 4 * i]), kEraFitMinF);
}

// Cost sum rho_k^2 with rho = sign(r)|r/s|^(p/2), and (when JtJ is non-null) J^T J and J^T rho.
double evaluate(const Problem& pr, const std::vector<double>& th, double p, double s, std::vector<double>* JtJ,
                std::vector<double>* Jtr) {
  const int P = pr.P;
  const double h = p / 2.0;
  std::vector<double> J(P);
  if (JtJ) {
    std::fill(JtJ->begin(), JtJ->end(), 0.0);
    std::fill(Jtr->begin(), Jtr->end(), 0.0);
  }
  double cost = 0.0;
  for (int64_t k = 0; k < pr.N; ++k) {
    const double r = model(pr, th.data(), pr.x[k], JtJ ? J.data() : nullptr) - pr.y[k];
    const double u = std::fabs(r / s);
    const double rho = h == 1.0 ? r / s : std::copysign(std::pow(u, h), r);
    cost += rho * rho;
    if (JtJ) {
      const double w = h == 1.0 ? 1.0 / s : h * std::pow(u, h - 1.0) / s;
      for (int i = 0; i < P; ++i) {
        const double ji = w * J[i];
        (*Jtr)[i] += ji * rho;
        for (int j = 0; j <= i; ++j) (*JtJ)[i * P + j] += ji * w * J[j];
      }
    }
  }
  if (JtJ)
    for (int i = 0; i < P; ++i)
      for (int j = 0; j < i; ++j) (*JtJ)[j * P + i] = (*JtJ)[i * P + j];
  return std::isfinite(cost) ? cost : INFINITY;
}

void levenberg_marquardt(const Problem& pr, std::vector<double>& th, double p, double s, int iters) {
  const int P = pr.P;
  std::vector<double> JtJ(P * P), Jtr(P), A(P * P), delta(P), trial(P);
  double cost = evaluate(pr, th, p, s, &JtJ, &Jtr);
  if (!std::isfinite(cost)) return;
  double lam = 1e-3;
  for (int it = 0; it < iters; ++it) {
    double trace = 0.0;
    for (int i = 0; i < P; ++i) trace += JtJ[i * P + i];
    A = JtJ;
    for (int i = 0; i < P; ++i) A[i * P + i] += lam * (JtJ[i * P + i] + 1e-12 * trace / P + 1e-300);
    for (int i = 0; i < P; ++i) delta[i] = -Jtr[i];
    bool ok = cholesky_solve(A, delta, P);
    double cost2 = INFINITY;
    if (ok) {
      for (int i = 0; i < P; ++i) trial[i] = th[i] + delta[i];
      project(pr, trial);
      cost2 = evaluate(pr, trial, p, s, nullptr, nullptr);
    }
    if (ok && cost2 < cost) {
      const bool converged = cost - cost2 <= kLMRelTol * cost;
      th = trial;
      cost = evaluate(pr, th, p, s, &JtJ, &Jtr);
      lam = std::max(lam / 3.0, 1e-12);
      if (converged) break;
    } else {
      lam *= 4.0;
      if (lam > 1e12) break;
    }
  }
}

// Start (e_i, f_i) lists over [lo, hi].
std::vector<std::vector<std::pair<double, double>>> starts(int n, double lo, double hi) {
  const double mid = 0.5 * (lo + hi), half = 0.5 * (hi - lo);
  std::vector<std::vector<std::pair<double, double>>> out;
  if (n == 1) {
    for (double e : {-2.0 / 3, -1.0 / 3, -1.0 / 6, 0.0, 1.0 / 6, 1.0 / 3, 2.0 / 3})
      for (double f : {1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3}) out.push_back({{mid + e * half, f * half}});
  }
  if (n == 2) {
    const double E[] = {-2.0 / 3, -1.0 / 3, 0.0, 1.0 / 3, 2.0 / 3};
    for (int i = 0; i < 5; ++i)
      for (int j = i; j < 5; ++j)
        for (double f : {1.0 / 6, 1.0 / 3, 2.0 / 3})
          out.push_back({{mid + E[i] * half, f * half}, {mid + E[j] * half + (i == j ? 0.1 * half : 0.0), f * half}});
  }
  for (double spread : {0.3, 0.6, 0.9})
    for (double f : {0.1, 0.2, 0.4}) {
      std::vector<std::pair<double, double>> s;
      for (int i = 0; i < n; ++i)
        s.push_back({mid + half * spread * (2.0 * (i + 0.5) / n - 1.0), std::max(f * half, kEraFitMinF)});
      out.push_back(s);
    }
  return out;
}

}  // namespace

EraFitResult fit_era(const at::Tensor& x_in, const at::Tensor& y_in, int64_t n, double eps) {
  TORCH_CHECK_VALUE(n >= 1 && n <= kernels::kMaxEraFractions, "torch_rational.fit_era: num_fractions must be in [1, ",
                    kernels::kMaxEraFractions, "], got ", n);
  TORCH_CHECK_VALUE(eps >= 0.0 && std::isfinite(eps), "torch_rational.fit_era: eps must be finite and >= 0, got ",
                    eps);
  TORCH_CHECK_VALUE(x_in.dim() == 1 && y_in.sizes() == x_in.sizes() && x_in.numel() >= 4 * n + 3,
                    "torch_rational.fit_era: x and y must be 1-D of the same length (at least 4n+3 points), got ",
                    x_in.sizes(), " and ", y_in.sizes());
  auto x = x_in.detach().to(at::kCPU, at::kDouble).contiguous();
  auto y = y_in.detach().to(at::kCPU, at::kDouble).contiguous();
  TORCH_CHECK_VALUE(at::isfinite(x).all().item<bool>() && at::isfinite(y).all().item<bool>(),
                    "torch_rational.fit_era: x and y must be finite");
  Problem pr{x.data_ptr<double>(), y.data_ptr<double>(), x.numel(), static_cast<int>(n),
             kernels::era_params_per_group(static_cast<int>(n)), eps};
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  std::vector<double> best;
  double best_err = INFINITY;
  for (const auto& start : starts(pr.n, lo, hi)) {
    std::vector<double> th(pr.P, 0.0);
    for (int i = 0; i < pr.n; ++i) {
      th[4 + 4 * i] = start[i].first;
      th[5 + 4 * i] = std::max(start[i].second, kEraFitMinF);
    }
    best_linear(pr, th);
    double e = max_error(pr, th);
    if (!std::isfinite(e)) continue;
    if (e > 0.0) {
      levenberg_marquardt(pr, th, 2.0, e, kItersL2);
      e = max_error(pr, th);
      for (double p : kPSchedule) {
        if (!(e > 0.0)) break;
        auto th1 = th;
        levenberg_marquardt(pr, th1, p, e, kItersP);
        const double e1 = max_error(pr, th1);
        if (e1 <= e) {
          th = th1;
          e = e1;
        }
      }
    }
    if (e < best_err) {
      best_err = e;
      best = th;
    }
  }
  TORCH_CHECK(!best.empty(), "torch_rational.fit_era: no start gave a finite fit");
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto all = at::tensor(best, opts);
  return EraFitResult{all.narrow(0, 0, 2).clone(), all.narrow(0, 2, 4 * n).reshape({n, 4}).clone(), best_err};
}

EraFitResult fit_era_function(const InitFunction& function, int64_t n, double lo, double hi, int64_t num_points,
                              double eps) {
  TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
                    "torch_rational.fit_era: range must be finite with lo < hi, got [", lo, ", ", hi, "]");
  TORCH_CHECK_VALUE(num_points >= 4 * n + 3, "torch_rational.fit_era: num_points must be at least 4n+3, got ",
                    num_points);
  auto x = at::linspace(lo, hi, num_points, at::TensorOptions().dtype(at::kDouble));
  auto y = evaluate_init(function, x, "init").to(at::kDouble);
  return fit_era(x, y, n, eps);
}

EraFitResult fit_era_named(const std::string& function, int64_t n, double lo, double hi, int64_t num_points,
                           double eps) {
  return fit_era_function(init_function_or_named(nullptr, function), n, lo, hi, num_points, eps);
}

bool has_era_init_table_entry(const std::string& function, int64_t n) {
  const std::string f = canonical_function_name(function);
  for (const auto& e : era_init_table())
    if (f == e.function && e.n == n) return true;
  return false;
}

std::pair<at::Tensor, at::Tensor> era_init_parameters(const std::string& function, int64_t n, bool warn_if_fitted) {
  TORCH_CHECK_VALUE(n >= 1 && n <= kernels::kMaxEraFractions, "torch_rational: num_fractions must be in [1, ",
                    kernels::kMaxEraFractions, "], got ", n);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  if (function == "random") {
    // A random stable start: near-identity linear part, small fractions with widths in [0.5, 1.5]
    // (bounded away from 0, so no sharp spike) and centres in [-2, 2].
    auto linear = at::tensor({1.0, 0.0}, opts) + at::randn({2}, opts) * 0.1;
    auto fr = at::empty({n, 4}, opts);
    fr.select(1, 0).copy_(at::randn({n}, opts) * 0.1);
    fr.select(1, 1).copy_(at::randn({n}, opts) * 0.1);
    fr.select(1, 2).copy_(at::rand({n}, opts) * 4.0 - 2.0);
    fr.select(1, 3).copy_(at::rand({n}, opts) + 0.5);
    return {linear, fr};
  }
  TORCH_CHECK_VALUE(is_named_function(function), "torch_rational: unknown init function '", function,
                    "'; use one of ", known_function_names(), ", random");
  const std::string f = canonical_function_name(function);
  for (const auto& e : era_init_table()) {
    if (f == e.function && e.n == n) {
      return {at::tensor(e.linear, opts), at::tensor(e.fractions, opts).reshape({n, 4})};
    }
  }
  static std::mutex mu;
  static std::map<std::pair<std::string, int64_t>, EraFitResult> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_pair(f, n);
  auto it = cache.find(key);
  if (it == cache.end()) {
    if (warn_if_fitted)
      TORCH_WARN("torch_rational: no shipped ERA init for ", f, " with ", n,
                 " fractions; fitting it now on [-3, 3] (done once per process)");
    it = cache.emplace(key, fit_era_named(f, n)).first;
  }
  return {it->second.linear.clone(), it->second.fractions.clone()};
}

namespace {

std::tuple<at::Tensor, at::Tensor, double> fit_era_op(c10::string_view function, int64_t n, double lo, double hi) {
  auto r = fit_era_named(std::string(function), n, lo, hi);
  return {r.linear, r.fractions, r.max_error};
}

std::tuple<at::Tensor, at::Tensor, double> fit_era_data_op(const at::Tensor& x, const at::Tensor& y, int64_t n,
                                                           double eps) {
  auto r = fit_era(x, y, n, eps);
  return {r.linear, r.fractions, r.max_error};
}

std::tuple<at::Tensor, at::Tensor> era_init_op(c10::string_view function, int64_t n) {
  // Python warns on its own side (as a Python warning), so no C++ warning here.
  auto r = era_init_parameters(std::string(function), n, /*warn_if_fitted=*/false);
  return {r.first, r.second};
}

bool has_era_init_table_entry_op(c10::string_view function, int64_t n) {
  return has_era_init_table_entry(std::string(function), n);
}

}  // namespace

// Utility ops (CompositeImplicitAutograd, like fit_rational): the same fitter and tables for
// Python and C++.
TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("fit_era(str function, int num_fractions, float lo=-3.0, float hi=3.0) -> (Tensor, Tensor, float)",
        &fit_era_op);
  m.def("fit_era_data(Tensor x, Tensor y, int num_fractions, float eps=1e-06) -> (Tensor, Tensor, float)",
        &fit_era_data_op);
  m.def("era_init(str function, int num_fractions) -> (Tensor, Tensor)", &era_init_op);
  m.def("has_era_init_table_entry(str function, int num_fractions) -> bool", &has_era_init_table_entry_op);
}

}  // namespace torch_rational
