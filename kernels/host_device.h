// TR_HOST_DEVICE: the qualifiers of the per-element math shared by the CPU kernels (plain inline
// C++) and the CUDA kernels (__host__ __device__, force-inlined), so one definition serves both.
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TR_HOST_DEVICE inline
#endif
