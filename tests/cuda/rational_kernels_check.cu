// nvcc compile check of kernels/rational.cuh without ATen: instantiates the launchers (and with
// them every fixed-degree and generic kernel) for the four element types the glue uses.
#include "rational.cuh"

namespace torch_rational::kernels::cuda {
TR_INSTANTIATE_LAUNCHERS(rational, RationalCudaParams)
}  // namespace torch_rational::kernels::cuda
