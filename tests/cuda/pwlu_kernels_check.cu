// nvcc compile check of kernels/pwlu.cuh without ATen: instantiates the launchers (and with them
// the forward, backward and finish kernels) for the four element types the glue uses, for every
// architecture check_kernels.sh targets.
#include "pwlu.cuh"

namespace trc = torch_rational::kernels::cuda;

#define TR_PWLU_INSTANTIATE(T)                                                               \
  template void trc::launch_pwlu_forward<T>(const trc::PwluCudaParams<T>&, cudaStream_t);  \
  template void trc::launch_pwlu_backward<T>(const trc::PwluCudaParams<T>&, cudaStream_t); \
  template void trc::launch_pwlu_finish<T>(const trc::PwluCudaParams<T>&, cudaStream_t);

TR_PWLU_INSTANTIATE(float)
TR_PWLU_INSTANTIATE(double)
TR_PWLU_INSTANTIATE(__half)
TR_PWLU_INSTANTIATE(__nv_bfloat16)
