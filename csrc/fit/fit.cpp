// The project's own rational least-squares fitter and the shipped initialisation tables.
//
// The fit (float64, deterministic):
//   1. F = basis matrix f_0..f_max(m,n) on the given points.
//   2. Six denominator starts: b_k = c / max|g_k| for c in {0.01, 0.1, 1, 10} (C: b_0 = 0.9), the
//      linearised (Levy) least-squares solution and its 3rd Sanathanan-Koerner reweighting
//      (A: absolute values of those).
//   3. Per start: the best numerator for that denominator (linear least squares), Levenberg-Marquardt
//      on the L2 error (50 steps), then LM on sum |r/s|^p for p = 3 ... 256 (10 steps each, s = max
//      error at stage entry), which approaches the minimax (smallest maximum error) fit; a stage is
//      kept only if the max error did not grow. Version A keeps b >= 0 by projection.
//   4. The start with the smallest max error on the points wins.
// Every linear solve is a column-scaled ridge problem solved by plain QR (LAPACK gels).
#include "fit/fit.h"

#include <c10/util/Exception.h>
#include <c10/util/ParallelGuard.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <torch/library.h>
#include <torch/torch.h>

#include <cmath>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <tuple>

#include "ops/named_functions.h"
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

}  // namespace

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

// Runs the fit on this thread only. ParallelGuard keeps at::parallel_for inline; setting this
// thread's OpenMP thread count to 1 (an OpenMP ICV, so per calling thread) also keeps MKL's BLAS
// from starting a team for every small mv. On a busy machine those teams spun for seconds per op
// (a (5,4) fit took 30-60 s with 2 threads under load, 2 s with 1).
class SerialRegion {
 public:
  SerialRegion() : guard_(true) {
#ifdef _OPENMP
    prev_ = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
  }
  ~SerialRegion() {
#ifdef _OPENMP
    omp_set_num_threads(prev_);
#endif
  }
  SerialRegion(const SerialRegion&) = delete;
  SerialRegion& operator=(const SerialRegion&) = delete;

 private:
  c10::ParallelGuard guard_;
  int prev_ = 1;
};

// Tuning constants (see the file comment).
constexpr double kStartConstants[] = {0.01, 0.1, 1.0, 10.0};
constexpr int kSKIters = 3;             // Sanathanan-Koerner reweightings of the linearised start
constexpr double kRidge = 1e-14;        // relative ridge of every linear least-squares solve
constexpr double kLambda0 = 1e-3;       // initial LM damping
constexpr double kLMRelTol = 1e-10;     // LM stops when the cost decreases by less than this (relative)
constexpr int kItersL2 = 50;            // LM steps on the L2 error
constexpr int kItersP = 10;             // LM steps per stage of the p-schedule
constexpr double kPSchedule[] = {3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};

bool all_finite(const at::Tensor& t) { return at::isfinite(t).all().item<bool>(); }

// argmin_x |A x - rhs|^2 + ridge |D x|^2, D = column norms of A. The columns are scaled to unit
// norm and sqrt(ridge) I is appended (always full rank), then solved by Householder QR written
// out here: the systems are tiny (N x ~10), and LAPACK's threaded gels was both slower (its
// threads spin for seconds when the machine is oversubscribed) and not bitwise reproducible
// across thread counts. This loop is single-threaded and gives the same bits everywhere.
// Returns NaNs (which the callers reject) if A or rhs is not finite, e.g. for a start whose
// denominator is exactly zero at a point (version N).
at::Tensor solve_ls(const at::Tensor& A, const at::Tensor& rhs, double ridge) {
  const int64_t N = A.size(0), P = A.size(1), M = N + P;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (!all_finite(A) || !all_finite(rhs)) return at::full({P}, nan, A.options());
  const auto Ac = A.contiguous();
  const auto bc = rhs.contiguous();
  const double* a = Ac.data_ptr<double>();
  const double* r = bc.data_ptr<double>();
  // Column-major copy of [A / d; sqrt(ridge) I] and of [rhs; 0].
  std::vector<double> d(P, 0.0), W(static_cast<size_t>(M * P), 0.0), b(static_cast<size_t>(M), 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < P; ++j) d[j] += a[i * P + j] * a[i * P + j];
  for (int64_t j = 0; j < P; ++j) d[j] = std::max(std::sqrt(d[j]), 1e-300);
  for (int64_t j = 0; j < P; ++j) {
    double* col = &W[j * M];
    for (int64_t i = 0; i < N; ++i) col[i] = a[i * P + j] / d[j];
    col[N + j] = std::sqrt(ridge);
  }
  for (int64_t i = 0; i < N; ++i) b[i] = r[i];
  for (int64_t k = 0; k < P; ++k) {
    double* ck = &W[k * M];
    double norm = 0.0;
    for (int64_t i = k; i < M; ++i) norm += ck[i] * ck[i];
    norm = std::sqrt(norm);
    if (norm == 0.0) return at::full({P}, nan, A.options());
    const double alpha = ck[k] > 0 ? -norm : norm;  // v = x - alpha e_k, no cancellation
    ck[k] -= alpha;
    const double vnorm2 = norm * norm - (ck[k] + alpha) * (ck[k] + alpha) + ck[k] * ck[k];
    auto reflect = [&](double* y) {  // y -= 2 v (v.y) / (v.v)
      double dot = 0.0;
      for (int64_t i = k; i < M; ++i) dot += ck[i] * y[i];
      const double s = 2.0 * dot / vnorm2;
      for (int64_t i = k; i < M; ++i) y[i] -= s * ck[i];
    };
    for (int64_t j = k + 1; j < P; ++j) reflect(&W[j * M]);
    reflect(b.data());
    ck[k] = alpha;  // R's diagonal; below it is no longer needed
  }
  std::vector<double> x(P);
  for (int64_t k = P - 1; k >= 0; --k) {
    double s = b[k];
    for (int64_t j = k + 1; j < P; ++j) s -= W[j * M + k] * x[j];
    x[k] = s / W[k * M + k];
  }
  auto out = at::empty({P}, A.options());
  for (int64_t j = 0; j < P; ++j) out.data_ptr<double>()[j] = x[j] / d[j];
  return out;
}

// The fitting problem: basis matrix, target, degrees and version.
struct Problem {
  at::Tensor F;   // (N, D+1), f_0..f_D
  at::Tensor Fa;  // (N, m+1), numerator columns
  at::Tensor G;   // (N, nb), denominator columns f_k0..f_n (|f_k| for version A)
  at::Tensor y;   // (N,)
  int64_t m;
  int64_t nb;
  kernels::Version v;
};

// Q (N,) and dQ/db (N, nb). Version A keeps b >= 0 in the fitter, so |b_k| = b_k there.
std::pair<at::Tensor, at::Tensor> denominator_and_jacobian(const Problem& pr, const at::Tensor& b) {
  switch (pr.v) {
    case kernels::Version::A: {
      auto sgn = at::where(b >= 0, 1.0, -1.0).to(at::kDouble);
      return {at::mv(pr.G, b.abs()) + 1.0, pr.G * sgn};
    }
    case kernels::Version::B:
    case kernels::Version::C: {
      auto S = at::mv(pr.G, b);
      auto sgn = at::where(S >= 0, 1.0, -1.0).to(at::kDouble);
      const double q0 = pr.v == kernels::Version::B ? 1.0 : 0.1;
      return {S.abs() + q0, pr.G * sgn.unsqueeze(1)};
    }
    case kernels::Version::N:
    default:
      return {at::mv(pr.G, b) + 1.0, pr.G};
  }
}

// r = P/Q - y and dr/dtheta, theta = [a_0..a_m, b...].
std::pair<at::Tensor, at::Tensor> residual_and_jacobian(const Problem& pr, const at::Tensor& theta) {
  auto a = theta.narrow(0, 0, pr.m + 1);
  auto b = theta.narrow(0, pr.m + 1, pr.nb);
  auto QdQ = denominator_and_jacobian(pr, b);
  const auto& Q = QdQ.first;
  auto R = at::mv(pr.Fa, a) / Q;
  auto J = at::cat({pr.Fa / Q.unsqueeze(1), -(R / Q).unsqueeze(1) * QdQ.second}, 1);
  return {R - pr.y, J};
}

double max_err(const Problem& pr, const at::Tensor& theta) {
  auto a = theta.narrow(0, 0, pr.m + 1);
  auto b = theta.narrow(0, pr.m + 1, pr.nb);
  auto Q = denominator_and_jacobian(pr, b).first;
  const double e = (at::mv(pr.Fa, a) / Q - pr.y).abs().max().item<double>();
  return std::isfinite(e) ? e : INFINITY;
}

// For a fixed denominator the numerator is a linear least-squares problem.
at::Tensor best_numerator(const Problem& pr, const at::Tensor& b) {
  auto Q = denominator_and_jacobian(pr, b).first;
  return solve_ls(pr.Fa / Q.unsqueeze(1), pr.y, kRidge);
}

// Candidate denominators: b_k = c / max|g_k| for each start constant (C: b_0 = 0.9), the
// linearised (Levy) least-squares solution and its last Sanathanan-Koerner reweighting
// (A: absolute values of those).
std::vector<at::Tensor> denominator_starts(const Problem& pr) {
  const bool isA = pr.v == kernels::Version::A;
  const bool isC = pr.v == kernels::Version::C;
  const int64_t N = pr.y.size(0);
  std::vector<at::Tensor> starts;
  auto scale = std::get<0>(pr.G.abs().max(0)).clamp_min(1e-12);  // max |g_k| on the grid
  for (double c : kStartConstants) {
    auto b = scale.reciprocal() * c;
    if (isC) b[0] = 0.9;  // Q = 0.1 + |0.9 + ...| ~ 1 + ...
    starts.push_back(b);
  }
  //   sum_j a_j f_j - y sum_k c_k g_k = q0 y, weighted by 1/|Q_prev|
  const double q0 = isC ? 0.1 : 1.0;
  auto M = at::cat({pr.Fa, -pr.y.unsqueeze(1) * pr.G}, 1);
  auto w = at::ones({N}, pr.y.options());
  for (int it = 0; it <= kSKIters; ++it) {
    auto sol = solve_ls(M * w.unsqueeze(1), pr.y * q0 * w, kRidge);
    if (!all_finite(sol)) break;
    auto c = sol.narrow(0, pr.m + 1, pr.nb).clone();
    if (it == 0 || it == kSKIters) starts.push_back(isA ? c.abs() : c);
    auto Qlin = (at::mv(pr.G, c) + q0).abs();
    w = Qlin.clamp_min(1e-3 * Qlin.max().item<double>() + 1e-300).reciprocal();
  }
  return starts;
}

// Minimises sum_i |r_i/s|^p by Levenberg-Marquardt on rho_i = sign(r_i) |r_i/s|^(p/2); s (fixed
// within a call) is the max error at entry, so rho stays O(1). Column-scaled damped steps; a step
// is accepted if the cost decreases (lambda /= 3), else lambda *= 4.
at::Tensor levenberg_marquardt(const Problem& pr, at::Tensor theta, double p, double s, int iters) {
  const double h = p / 2.0;
  auto evaluate = [&](const at::Tensor& th) {
    auto rJ = residual_and_jacobian(pr, th);
    const auto& r = rJ.first;
    auto u = (r / s).abs();
    auto rho = at::pow(u, h) * at::sign(r);
    at::Tensor Jr = h != 1.0 ? at::pow(u, h - 1.0).unsqueeze(1) * (h / s) * rJ.second : rJ.second / s;
    return std::make_pair(rho, Jr);
  };
  auto rhoJ = evaluate(theta);
  double cost = (rhoJ.first * rhoJ.first).sum().item<double>();
  double lam = kLambda0;
  for (int it = 0; it < iters; ++it) {
    auto delta = solve_ls(rhoJ.second, -rhoJ.first, lam);
    auto trial = theta + delta;
    if (pr.v == kernels::Version::A) trial.narrow(0, pr.m + 1, pr.nb).clamp_min_(0.0);
    auto rhoJ2 = evaluate(trial);
    const double cost2 = (rhoJ2.first * rhoJ2.first).sum().item<double>();
    if (std::isfinite(cost2) && cost2 < cost && all_finite(rhoJ2.second)) {
      const bool converged = cost - cost2 <= kLMRelTol * cost;
      theta = trial;
      rhoJ = rhoJ2;
      cost = cost2;
      lam = std::max(lam / 3.0, 1e-12);
      if (converged) break;
    } else {
      lam *= 4.0;
      if (lam > 1e10) break;
    }
  }
  return theta;
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
  at::NoGradGuard no_grad;
  // The problems are small (N x ~10): ATen's intra-op threads only add overhead here and, when the
  // machine is oversubscribed, spin-wait for seconds per op. ParallelGuard makes at::parallel_for
  // run inline on this thread; the least-squares solves are our own single-threaded QR.
  SerialRegion serial;
  auto x = x_in.detach().to(at::kCPU, at::kDouble).contiguous();
  auto y = y_in.detach().to(at::kCPU, at::kDouble).contiguous();
  TORCH_CHECK_VALUE(all_finite(x) && all_finite(y), "torch_rational.fit: x and y must be finite");
  const int k0 = kernels::first_den_power(v);
  const int D = static_cast<int>(std::max(m, n));

  Problem pr;
  pr.F = basis_matrix(x, bs, D);
  pr.Fa = pr.F.narrow(1, 0, m + 1);
  pr.nb = n + 1 - k0;
  pr.G = pr.F.narrow(1, k0, pr.nb);
  if (v == kernels::Version::A) pr.G = pr.G.abs();
  pr.y = y;
  pr.m = m;
  pr.v = v;

  // Fallback, only kept if every start does worse: polynomial least squares over Q == 1
  // (C: 0.1 + |0.9|).
  auto b0 = at::zeros({pr.nb}, y.options());
  if (v == kernels::Version::C) b0[0] = 0.9;
  auto a0 = best_numerator(pr, b0);
  at::Tensor best = at::cat({a0, b0});
  double best_err = max_err(pr, best);

  for (const auto& b : denominator_starts(pr)) {
    auto a = best_numerator(pr, b);
    auto theta = at::cat({a, b});
    if (!all_finite(theta)) continue;
    double e = max_err(pr, theta);
    if (!std::isfinite(e)) continue;
    if (e > 0.0) {
      // least squares, then the p-norm continuation towards minimax; a stage is kept only if the
      // max error does not grow
      theta = levenberg_marquardt(pr, theta, 2.0, e, kItersL2);
      e = max_err(pr, theta);
      for (double p : kPSchedule) {
        if (!(e > 0.0)) break;
        auto th1 = levenberg_marquardt(pr, theta, p, e, kItersP);
        const double e1 = max_err(pr, th1);
        if (e1 <= e) {
          theta = th1;
          e = e1;
        }
      }
    }
    if (e < best_err) {
      best_err = e;
      best = theta;
    }
  }
  return FitResult{best.narrow(0, 0, m + 1).clone(), best.narrow(0, m + 1, pr.nb).clone(), best_err};
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
  const std::string f = canonical_function_name(function);
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
                    "'; use one of ", known_function_names(), ", random");
  const std::string f = canonical_function_name(function);
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
    const auto [lo, hi] = default_fit_range(f);
    if (warn_if_fitted)
      TORCH_WARN("torch_rational: no shipped init for ", f, " at degrees (", m, ", ", n, "), version ", version,
                 ", basis ", basis, "; fitting it now on [", lo, ", ", hi, "] (done once per process)");
    auto target = [&](const at::Tensor& x) { return activation_function(f, x); };
    it = cache.emplace(key, fit_init_function(target, m, n, version, basis, lo, hi, f)).first;
  }
  return {it->second.numerator.clone(), it->second.denominator.clone()};
}

std::pair<at::Tensor, at::Tensor> init_fit_points(double lo, double hi) {
  TORCH_CHECK_VALUE(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
                    "torch_rational: fit_range must be finite with lo < hi, got (", lo, ", ", hi, ")");
  constexpr int64_t kInside = 4001, kBand = 400;
  const double band = 0.25 * (hi - lo);
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto inside = at::linspace(lo, hi, kInside, opts);
  auto outside = at::cat({at::linspace(lo - band, lo, kBand + 1, opts).narrow(0, 0, kBand),
                          at::linspace(hi, hi + band, kBand + 1, opts).narrow(0, 1, kBand)});
  return {inside, outside};
}

InitFit fit_init(const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_outside, const at::Tensor& y_outside,
                 int64_t m, int64_t n, const std::string& version, const std::string& basis,
                 const std::string& what) {
  TORCH_CHECK_VALUE(x_outside.sizes() == y_outside.sizes(), "torch_rational: init fit: y_outside must have the "
                    "shape of x_outside ", x_outside.sizes(), ", got ", y_outside.sizes());
  TORCH_CHECK_VALUE(at::isfinite(y).all().item<bool>() && at::isfinite(y_outside).all().item<bool>(),
                    "torch_rational: init fit: ", what, " returned non-finite values");
  InitFit r{fit_rational(x, y, m, n, version, basis), 0.0, {}};
  auto xo = x_outside.to(at::kDouble);
  auto yo = y_outside.to(at::kDouble);
  if (xo.numel() == 0) return r;
  auto ro = rational(xo, r.fit.numerator, r.fit.denominator, version, basis, /*channel_dim=*/0, /*noise=*/0.0,
                     std::nullopt);
  r.outside_error = (ro - yo).abs().max().item<double>();
  auto yd = y.to(at::kDouble);
  // A quarter of the target's range on the fitted interval: the fits the shipped tables hold stay
  // well under it (relu at degrees (5, 4): 0.09 of it); hardswish fitted on [-3, 3] strays by 1/3.
  const double scale = (yd.max() - yd.min()).item<double>();
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  if (r.outside_error > 0.25 * std::max(scale, 1e-12)) {
    std::ostringstream msg;
    msg << "torch_rational: the init fit of " << what << " on fit_range (" << lo << ", " << hi
        << ") departs from it just outside that range (max error " << r.outside_error << " within "
        << 0.25 * (hi - lo) << " of the ends, vs " << r.fit.max_error
        << " inside): pass a wider fit_range covering the inputs you expect";
    r.warning = msg.str();
  }
  return r;
}

FitResult fit_init_function(const std::function<at::Tensor(const at::Tensor&)>& function, int64_t m, int64_t n,
                            const std::string& version, const std::string& basis, double lo, double hi,
                            const std::string& what) {
  auto [x, xo] = init_fit_points(lo, hi);
  auto y = function(x), yo = function(xo);
  TORCH_CHECK_VALUE(y.sizes() == x.sizes() && yo.sizes() == xo.sizes(),
                    "torch_rational: init: ", what, " must return a tensor of its input's shape");
  auto r = fit_init(x, y, xo, yo, m, n, version, basis, what);
  if (!r.warning.empty()) TORCH_WARN(r.warning);
  return r.fit;
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

bool has_init_table_entry_op(c10::string_view function, int64_t m, int64_t n, c10::string_view version,
                             c10::string_view basis) {
  return has_init_table_entry(std::string(function), m, n, std::string(version), std::string(basis));
}

std::tuple<at::Tensor, at::Tensor, double, std::string> fit_init_op(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& x_outside, const at::Tensor& y_outside, int64_t m,
    int64_t n, c10::string_view version, c10::string_view basis, c10::string_view what) {
  auto r = fit_init(x, y, x_outside, y_outside, m, n, std::string(version), std::string(basis), std::string(what));
  return {r.fit.numerator, r.fit.denominator, r.fit.max_error, r.warning};
}

std::tuple<at::Tensor, at::Tensor> init_fit_points_op(double lo, double hi) {
  auto r = init_fit_points(lo, hi);
  return {r.first, r.second};
}

}  // namespace

// Utility ops (not activations): exposed through the dispatcher so Python uses the same fitter and
// tables as C++. CompositeImplicitAutograd: they run above autograd (the fitter needs no autograd).
TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("fit_rational(Tensor x, Tensor y, int num_degree, int den_degree, str version, str basis) "
        "-> (Tensor, Tensor, float)",
        &fit_rational_op);
  m.def("init_coefficients(str function, int num_degree, int den_degree, str version, str basis) "
        "-> (Tensor, Tensor)",
        &init_coefficients_op);
  m.def("has_init_table_entry(str function, int num_degree, int den_degree, str version, str basis) -> bool",
        &has_init_table_entry_op);
  m.def("init_fit_points(float lo, float hi) -> (Tensor, Tensor)", &init_fit_points_op);
  m.def("fit_init(Tensor x, Tensor y, Tensor x_outside, Tensor y_outside, int num_degree, int den_degree, "
        "str version, str basis, str what) -> (Tensor, Tensor, float, str)",
        &fit_init_op);
}

}  // namespace torch_rational
