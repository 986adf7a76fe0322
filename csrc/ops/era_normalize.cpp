#include "ops/era_normalize.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace torch_rational {

namespace {

constexpr double kNormEps = 1e-5;  // as torch.nn.InstanceNorm / LayerNorm

// CompositeImplicitAutograd: built from ATen's native normalisation ops, so autograd (and
// double backward) goes through their own derivative kernels, on CPU and CUDA alike.
at::Tensor era_normalize_composite(const at::Tensor& x, c10::string_view kind_view, int64_t channel_dim) {
  const std::string kind(kind_view);
  TORCH_CHECK_VALUE(kind.empty() || kind == "instance" || kind == "layer",
                    "torch_rational::era_normalize: normalize must be \"\", \"instance\" or \"layer\", got \"", kind,
                    "\"");
  if (kind.empty()) return x;
  TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational::era_normalize: normalize needs x with a channel dimension");
  TORCH_CHECK_INDEX(channel_dim >= -x.dim() && channel_dim < x.dim(), "torch_rational::era_normalize: channel_dim ",
                    channel_dim, " is out of range for x with ", x.dim(), " dimensions");
  const int64_t cd = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
  if (kind == "layer") {
    // layer_norm normalises trailing dims; move the channels last (a view), and back.
    const auto last = x.dim() - 1;
    auto xt = cd == last ? x : x.movedim(cd, last);
    auto y = at::layer_norm(xt, {xt.size(last)}, std::nullopt, std::nullopt, kNormEps);
    // Back in x's layout: the per-group ERA kernels are fastest on long runs of one channel.
    return cd == last ? y : y.movedim(last, cd).contiguous(x.suggest_memory_format());
  }
  TORCH_CHECK_VALUE(x.dim() >= 3, "torch_rational::era_normalize: normalize=\"instance\" needs x of shape "
                    "(N, C, *spatial), got ", x.sizes());
  TORCH_CHECK_VALUE(cd != 0, "torch_rational::era_normalize: normalize=\"instance\" needs channel_dim != 0 (dim 0 "
                    "is the batch)");
  // With the channels at dim 1, layer_norm over the trailing (spatial) dims is instance norm: per
  // (sample, channel). Measured faster than group_norm(x, C) and instance_norm on CPU.
  auto xt = cd == 1 ? x : x.movedim(cd, 1);
  auto y = at::layer_norm(xt, xt.sizes().slice(2), std::nullopt, std::nullopt, kNormEps);
  return cd == 1 ? y : y.movedim(1, cd).contiguous(x.suggest_memory_format());
}

}  // namespace

at::Tensor era_normalize(const at::Tensor& x, const std::string& kind, int64_t channel_dim) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("torch_rational::era_normalize", "")
                       .typed<at::Tensor(const at::Tensor&, c10::string_view, int64_t)>();
  return op.call(x, kind, channel_dim);
}

TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("era_normalize(Tensor x, str kind, int channel_dim) -> Tensor", &era_normalize_composite);
}

}  // namespace torch_rational
