// nvcc compile check of the shared host/device math: instantiates the element kernels and the
// Philox draws in device code for float and double, so a construct nvcc rejects fails CI.
#include "rational_math.h"

using namespace torch_rational::kernels;

template <typename T>
__global__ void rational_math_check_kernel(const T* x, T* y, T* dx, const T* a, const T* b, int m, int nb,
                                           int version, int basis, unsigned long long seed, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T da[kMaxDegree + 1], db[kMaxDegree + 1], mult[2 * kMaxDegree + 2];
  noise_multipliers<T>(seed, static_cast<uint64_t>(i), m + 1 + nb, T(0.1), mult);
  auto out = rational_element<T>(x[i], a, m, b, nb, static_cast<Version>(version), static_cast<Basis>(basis),
                                 x[i] > T(1e6), da, db);
  y[i] = out.y * mult[0];
  dx[i] = out.dydx + da[0] + db[0];
}

template __global__ void rational_math_check_kernel<float>(const float*, float*, float*, const float*,
                                                           const float*, int, int, int, int,
                                                           unsigned long long, int);
template __global__ void rational_math_check_kernel<double>(const double*, double*, double*, const double*,
                                                            const double*, int, int, int, int,
                                                            unsigned long long, int);
