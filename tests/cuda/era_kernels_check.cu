// nvcc compile check of kernels/era.cuh without ATen: instantiates the launchers (and with them
// every fixed-n and generic kernel) for the four element types the glue uses.
#include "era.cuh"

namespace torch_rational::kernels::cuda {
TR_INSTANTIATE_LAUNCHERS(era, EraCudaParams)
}  // namespace torch_rational::kernels::cuda
