// Glue helpers shared by the CUDA ops (rational, ERA, PWLU): ATen-aware, so not in kernels/.
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace torch_rational {
namespace cuda {

// at:: element types -> the CUDA types the kernels use (identical bit layout).
template <typename scalar_t>
struct CudaType {
  using type = scalar_t;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

inline int multiprocessor_count(int device) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return std::max(sms, 1);
}

// x seen as [outer][groups][span] in memory order: the group is constant on runs of span
// elements (span = stride(channel_dim) * channels_per_group when grouped).
struct Launch {
  at::Tensor xin;  // x in the layout the kernel reads
  int64_t outer, groups, span;
};

// Config: any of the ops' checked configs (groups, channel_dim, channels_per_group). Dense
// layouts are used in place; anything else (or force_contiguous) is made contiguous first.
template <typename Config>
Launch make_launch(const at::Tensor& x, const Config& cfg, bool force_contiguous = false) {
  Launch l;
  l.xin = (force_contiguous || !x.is_non_overlapping_and_dense()) ? x.contiguous() : x;
  const int64_t numel = l.xin.numel();
  l.groups = cfg.groups;
  l.span = cfg.groups > 1 ? l.xin.stride(cfg.channel_dim) * cfg.channels_per_group : numel;
  // Empty tensors (span may be 0) return before any launch; avoid dividing by zero here.
  l.outer = numel == 0 ? 0 : numel / (l.groups * l.span);
  return l;
}

}  // namespace cuda
}  // namespace torch_rational
