// nvcc compile check of kernels/rational.cuh without ATen: instantiates the launchers (and with
// them every fixed-degree and generic kernel) for the four element types the glue uses.
#include "rational.cuh"

namespace trc = torch_rational::kernels::cuda;

#define TR_INSTANTIATE(T)                                                                     \
  template void trc::launch_rational_forward<T>(const trc::RationalCudaParams<T>&, cudaStream_t); \
  template void trc::launch_rational_backward<T>(const trc::RationalCudaParams<T>&, cudaStream_t); \
  template void trc::launch_rational_finish<T>(const trc::RationalCudaParams<T>&, cudaStream_t);

TR_INSTANTIATE(float)
TR_INSTANTIATE(double)
TR_INSTANTIATE(__half)
TR_INSTANTIATE(__nv_bfloat16)
