// Host-side test of the fixed-degree element math of kernels/rational.cuh (Horner forward,
// recurrence backward, coefficient-gradient indexing by power) against the generic
// rational_element of kernels/rational_math.h, which the CPU kernels use and the pytest suite
// checks against the float64 reference. Runs without a GPU: scripts/check_kernels.sh builds and
// runs every tests/cuda/*_host_test.cu. Exit status 0 = all cases agree.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "rational.cuh"

using namespace torch_rational::kernels;
using namespace torch_rational::kernels::cuda;

static int failures = 0;
static int checks = 0;

static void expect_close(double got, double want, double scale, const char* what, int M, int N, int v, int basis,
                         double x) {
  ++checks;
  const double tol = 1e-11 * (std::fabs(want) + scale + 1.0);
  if (!(std::fabs(got - want) <= tol)) {
    if (failures < 20)
      std::printf("MISMATCH %s (m=%d n=%d version=%d basis=%d x=%g): got %.17g want %.17g\n", what, M, N, v, basis,
                  x, got, want);
    ++failures;
  }
}

template <int M, int N, bool kPower>
static void check_case(Version v, Basis basis, std::mt19937_64& rng) {
  std::normal_distribution<double> nd(0.0, 0.5);
  const int k0 = first_den_power(v);
  const int nb = N + 1 - k0;
  for (int trial = 0; trial < 200; ++trial) {
    double a[M + 1], bp[N + 1], bd[kMaxDegree + 1];
    for (int j = 0; j <= M; ++j) a[j] = nd(rng);
    for (int k = 0; k <= N; ++k) bp[k] = k >= k0 ? nd(rng) : 0.0;
    for (int i = 0; i < nb; ++i) bd[i] = bp[i + k0];
    if (v == Version::N)
      for (int i = 0; i < nb; ++i) bd[i] *= 0.05, bp[i + k0] *= 0.05;
    const double x = 3.0 * nd(rng), g = nd(rng);
    double da[kMaxDegree + 1], db[kMaxDegree + 1];
    const ElementOut<double> ref = rational_element<double>(x, a, M, bd, nb, v, basis, false, da, db);
    const double y = forward_fixed<M, N, kPower, double>(x, a, bp, v, basis);
    expect_close(y, ref.y, std::fabs(ref.y), "y", M, N, int(v), int(basis), x);
    double acc[M + N + 2] = {};
    const double gx = backward_fixed<M, N, kPower, double>(x, g, a, bp, v, basis, true, acc);
    expect_close(gx, g * ref.dydx, std::fabs(g * ref.dydx), "grad_x", M, N, int(v), int(basis), x);
    for (int j = 0; j <= M; ++j) expect_close(acc[j], g * da[j], 0.0, "grad_a", M, N, int(v), int(basis), x);
    for (int i = 0; i < nb; ++i)
      expect_close(acc[M + 1 + i + k0], g * db[i], 0.0, "grad_b", M, N, int(v), int(basis), x);
  }
}

template <int M, int N>
static void check_degrees(std::mt19937_64& rng) {
  for (int v = 0; v < 4; ++v) {
    check_case<M, N, true>(static_cast<Version>(v), Basis::Power, rng);
    for (int b = 1; b <= 6; ++b) check_case<M, N, false>(static_cast<Version>(v), static_cast<Basis>(b), rng);
  }
}

// Every element of an [outer][groups][span] tensor is visited exactly once, by the threads of its
// own group, and every vector lies inside one run (so it is group-constant and, when the glue
// allowed vectors, 16-byte aligned).
template <int VEC>
static void check_coverage(int64_t outer, int64_t groups, int64_t span, bool vectorised, int64_t blocks,
                           int64_t threads) {
  const int64_t numel = outer * groups * span;
  std::vector<int> seen(numel, 0);
  bool wrong_group = false;
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t start = 0; start < blocks * threads; ++start) {
      for_each_grouped_element<VEC>(
          outer, groups, span, vectorised, g, start, blocks * threads,
          [&](int64_t iv) {
            for (int l = 0; l < VEC; ++l) {
              const int64_t i = iv * VEC + l;
              if (i >= numel || (i / span) % groups != g || i / span != (iv * VEC) / span) wrong_group = true;
              else ++seen[i];
            }
          },
          [&](int64_t i) {
            if (i >= numel || (i / span) % groups != g) wrong_group = true;
            else ++seen[i];
          });
    }
  }
  ++checks;
  bool ok = !wrong_group;
  for (int64_t i = 0; i < numel; ++i) ok = ok && seen[i] == 1;
  if (!ok) {
    if (failures < 20)
      std::printf("MISMATCH coverage VEC=%d outer=%lld groups=%lld span=%lld vectorised=%d blocks=%lld\n", VEC,
                  (long long)outer, (long long)groups, (long long)span, int(vectorised), (long long)blocks);
    ++failures;
  }
}

int main() {
  for (int64_t outer : {1, 2, 5})
    for (int64_t groups : {1, 2, 3, 8})
      for (int64_t span : {1, 3, 4, 8, 16, 37, 64})
        for (int64_t blocks : {1, 3}) {
          // The glue allows vectors only when run starts are aligned.
          check_coverage<4>(outer, groups, span, span % 4 == 0 || outer * groups == 1, blocks, 32);
          check_coverage<8>(outer, groups, span, span % 8 == 0 || outer * groups == 1, blocks, 32);
          check_coverage<2>(outer, groups, span, span % 2 == 0 || outer * groups == 1, blocks, 32);
          check_coverage<4>(outer, groups, span, false, blocks, 32);
        }
  std::mt19937_64 rng(12345);
  check_degrees<5, 4>(rng);
  check_degrees<4, 4>(rng);
  check_degrees<3, 2>(rng);
  check_degrees<7, 6>(rng);
  std::printf("rational_host_test: %d checks, %d failures\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
