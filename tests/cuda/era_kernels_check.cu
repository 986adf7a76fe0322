// nvcc compile check of kernels/era.cuh without ATen: instantiates the launchers (and with them
// every fixed-n and generic kernel) for the four element types the glue uses.
#include "era.cuh"

namespace trc = torch_rational::kernels::cuda;

#define TR_INSTANTIATE(T)                                                            \
  template void trc::launch_era_forward<T>(const trc::EraCudaParams<T>&, cudaStream_t);  \
  template void trc::launch_era_backward<T>(const trc::EraCudaParams<T>&, cudaStream_t); \
  template void trc::launch_era_finish<T>(const trc::EraCudaParams<T>&, cudaStream_t);

TR_INSTANTIATE(float)
TR_INSTANTIATE(double)
TR_INSTANTIATE(__half)
TR_INSTANTIATE(__nv_bfloat16)
