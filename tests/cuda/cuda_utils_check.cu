// nvcc compile check of kernels/cuda_utils.cuh: instantiates every helper in device code for the
// four element types, so a helper that only fails when instantiated still fails CI.
#include "cuda_utils.cuh"

using namespace torch_rational::kernels::cuda;

template <typename T>
__global__ void cuda_utils_check_kernel(const T* x, T* y, typename OpMath<T>::type* partials, int64_t nvec) {
  using acc_t = typename OpMath<T>::type;
  constexpr int N = VecSize<T>::value;
  __shared__ acc_t smem[32 * 3];
  acc_t acc[3] = {acc_t(0), acc_t(0), acc_t(0)};
  for (int64_t i = grid_stride_begin(); i < nvec; i += grid_stride_step()) {
    AlignedVector<T, N> v = load_vector<N>(x, i);
#pragma unroll
    for (int l = 0; l < N; ++l) {
      const acc_t f = to_opmath(v.val[l]);
      acc[0] += f;
      acc[1] += f * f;
      v.val[l] = from_opmath<T>(f + acc_t(1));
    }
    store_vector<N>(y, i, v);
  }
  acc[2] = warp_reduce_sum(acc[0]);
  const acc_t t = block_reduce_sum_many<3>(acc, smem);
  const acc_t r = block_reduce_sum_runtime<acc_t>(acc, 2, smem);
  if (threadIdx.x < 3) partials[blockIdx.x * 3 + threadIdx.x] = t + r;
}

template __global__ void cuda_utils_check_kernel<float>(const float*, float*, float*, int64_t);
template __global__ void cuda_utils_check_kernel<double>(const double*, double*, double*, int64_t);
template __global__ void cuda_utils_check_kernel<__half>(const __half*, __half*, float*, int64_t);
template __global__ void cuda_utils_check_kernel<__nv_bfloat16>(const __nv_bfloat16*, __nv_bfloat16*, float*,
                                                                int64_t);
template __global__ void torch_rational::kernels::cuda::finish_partials_kernel<float>(const float*, int64_t, int64_t, int, float*);
template __global__ void torch_rational::kernels::cuda::finish_partials_kernel<double>(const double*, int64_t, int64_t, int, double*);
