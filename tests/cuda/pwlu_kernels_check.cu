// nvcc compile check of kernels/pwlu.cuh without ATen: instantiates the launchers (and with them
// the forward, backward and finish kernels) for the four element types the glue uses, for every
// architecture check_kernels.sh targets.
#include "pwlu.cuh"

namespace torch_rational::kernels::cuda {
TR_INSTANTIATE_LAUNCHERS(pwlu, PwluCudaParams)
}  // namespace torch_rational::kernels::cuda
