// Argument checks shared by the three op families (rational, ERA, PWLU; rational_utils.h,
// era_utils.h, pwlu_utils.h), for every backend. Each message starts with "torch_rational.<op>: "
// and names the offending argument, so a user sees which one to fix.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <initializer_list>

namespace torch_rational {

// The dtypes every kernel is instantiated for (x, grad_output) and every parameter may have.
inline bool is_supported_dtype(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}

// TypeError "torch_rational.<op>: <arg> has dtype <dtype>; supported: float16, bfloat16, float32,
// float64" for anything else (integers, bool, complex, float8, ...): without it an integer tensor
// would reach a kernel or a float8 x the dtype dispatch ("not implemented for 'Float8_e4m3fn'",
// naming neither the op's argument nor what is supported).
inline void check_supported_dtype(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(is_supported_dtype(t.scalar_type()), "torch_rational.", op, ": ", arg, " has dtype ",
                   t.scalar_type(), "; supported: float16, bfloat16, float32, float64");
}

// ValueError "torch_rational.<op>: <arg> is on <device> but x is on <device>".
inline void check_same_device(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.device() == x.device(), "torch_rational.", op, ": ", arg, " is on ", t.device(),
                    " but x is on ", x.device());
}

// An op's tensor argument with the name its error messages give it.
struct NamedTensor {
  const char* name;
  const at::Tensor& tensor;
};

// check_supported_dtype for each tensor, in order (an op's first check, x and its parameters).
inline void check_supported_dtypes(const char* op, std::initializer_list<NamedTensor> tensors) {
  for (const NamedTensor& t : tensors) check_supported_dtype(op, t.name, t.tensor);
}

// check_same_device against x for each parameter, in order (an op's last check before its group split).
inline void check_on_device_of_x(const char* op, const at::Tensor& x, std::initializer_list<NamedTensor> params) {
  for (const NamedTensor& p : params) check_same_device(op, p.name, p.tensor, x);
}

// grad_output of a backward op: a supported dtype, on x's device, with x's shape and dtype.
inline void check_grad_output(const char* op, const at::Tensor& grad_output, const at::Tensor& x) {
  check_supported_dtype(op, "grad_output", grad_output);
  check_same_device(op, "grad_output", grad_output, x);
  TORCH_CHECK_VALUE(grad_output.sizes() == x.sizes(), "torch_rational.", op, ": grad_output has shape ",
                    grad_output.sizes(), " but x has shape ", x.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "torch_rational.", op, ": grad_output has dtype ",
                   grad_output.scalar_type(), " but x has dtype ", x.scalar_type());
}

// How x's channels split into `groups` groups (contiguous blocks of channels per group). Every
// op's checked config (RationalConfig, EraConfig, PwluConfig) is one, filled by check_group_split.
struct GroupSplit {
  int64_t groups = 1;
  int64_t channel_dim = -1;  // normalised; -1 when groups == 1 (channel_dim is then ignored)
  int64_t channels = 1;
  int64_t channels_per_group = 1;
};

inline GroupSplit check_group_split(const char* op, const at::Tensor& x, int64_t groups, int64_t channel_dim) {
  GroupSplit s;
  s.groups = groups;
  if (groups > 1) {
    TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational.", op, ": x must have a channel dimension when num_groups > 1");
    TORCH_CHECK_INDEX(channel_dim >= -x.dim() && channel_dim < x.dim(), "torch_rational.", op, ": channel_dim ",
                      channel_dim, " is out of range for x with ", x.dim(), " dimensions");
    s.channel_dim = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
    s.channels = x.size(s.channel_dim);
    TORCH_CHECK_VALUE(s.channels % groups == 0, "torch_rational.", op, ": x.size(channel_dim=", channel_dim, ") = ",
                      s.channels, " is not divisible by the number of groups (num_groups = ", groups, ")");
    s.channels_per_group = s.channels / groups;
  }
  return s;
}

}  // namespace torch_rational
