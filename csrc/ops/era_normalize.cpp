#include "ops/era_normalize.h"

#include <c10/util/Exception.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <optional>
#include <vector>

#include "ops/autograd/elementwise_autograd.h"  // needs_composite
#include "ops/cpu/era_normalize_kernel_vec.h"
#include "ops/cpu/vec_dispatch.h"
#include "ops/era.h"
#include "ops/era_utils.h"
#include "ops/registration.h"

namespace torch_rational {

namespace cpu {
const EraNormalizeKernels& era_normalize_kernels() {
  static const EraNormalizeKernels& chosen = TR_PICK_VEC_TABLE(era_normalize_table);
  return chosen;
}
}  // namespace cpu

namespace {

// ------------------------------------------------------------------------------------------------
// Layouts. In x's memory order (outermost dim first), the normalised dims are usually one block:
// x is then (outer O, reduced R, inner I) contiguous elements. I == 1 (instance norm of NCHW, layer
// norm over the channels of channels_last or of (T, C)) is at::layer_norm's layout, without a copy.
// I > 1 (layer norm over the channels of NCHW, instance norm of channels_last) is no native
// kernel's layout: at::layer_norm needs it transposed, which copies x and its gradient forth and
// back (5.8x the ERA op itself, scripts/compare_era_normalize.py); the fused kernels
// (cpu/era_normalize_kernel_vec.cpp) normalise it where it lies, vectorised across the I inner columns.

struct MemoryBlocks {
  std::vector<int64_t> order;  // x.permute(order) is contiguous
  int64_t outer, reduced, inner;
};

std::optional<MemoryBlocks> memory_blocks(const at::Tensor& x, const std::vector<bool>& normalised) {
  if (!x.is_non_overlapping_and_dense()) return std::nullopt;
  std::vector<int64_t> order(x.dim());
  std::iota(order.begin(), order.end(), 0);
  // Outermost first; size-1 dims have arbitrary strides, and sit anywhere in a contiguous tensor.
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return x.stride(a) > x.stride(b); });
  MemoryBlocks blocks{order, 1, 1, 1};
  int phase = 0;  // 0: outer kept dims, 1: normalised dims, 2: inner kept dims
  for (const int64_t d : order) {
    if (x.size(d) == 1) continue;
    if (normalised[d]) {
      if (phase == 2) return std::nullopt;  // the normalised dims are not one block
      phase = 1;
      blocks.reduced *= x.size(d);
    } else {
      if (phase == 1) phase = 2;
      (phase == 0 ? blocks.outer : blocks.inner) *= x.size(d);
    }
  }
  return blocks;
}

// The fused kernels of the widest build the CPU and torch's capability allow.
const cpu::EraNormalizeKernels& middle_kernels() { return cpu::era_normalize_kernels(); }

// The same normalisation as differentiable ATen ops, on the (O, R, I) view.
at::Tensor middle_normalize_composite(const at::Tensor& x) {
  auto var_mean = at::var_mean(x, {1}, /*correction=*/0, /*keepdim=*/true);
  return (x - std::get<1>(var_mean)) * at::rsqrt(std::get<0>(var_mean) + cpu::kEraNormEps);
}

// The fused kernels' first derivative; with create_graph the gradient is the composite's, built
// with a graph, so it can be differentiated again (as every op of this library).
struct MiddleNormalize : public torch::autograd::Function<MiddleNormalize> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    auto y = at::empty_like(x);
    auto mean = at::empty({x.size(0), x.size(2)}, x.options().dtype(at::kDouble));
    auto rstd = at::empty_like(mean);
    middle_kernels().middle_forward(x, y, mean, rstd);
    ctx->save_for_backward({x, mean, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& g = grad_outputs[0];
    if (at::GradMode::is_enabled()) {
      // d/dx of <composite(x), g>, built with a graph through g and x.
      auto y = middle_normalize_composite(x);
      return {torch::autograd::grad({y}, {x}, {g}, /*retain_graph=*/true, /*create_graph=*/true)[0]};
    }
    const auto gc = g.contiguous();
    auto grad_x = at::empty_like(x);
    middle_kernels().middle_backward(gc, x, saved[1], saved[2], grad_x);
    return {grad_x};
  }
};

// A tensor with real sizes and data: fake and functional tensors (torch.compile's tracing, with
// symbolic sizes) have neither, and take today's path, which needs no strides or data.
bool plain_tensor(const at::Tensor& x) {
  return !x.key_set().has(c10::DispatchKey::Python) && !x.key_set().has(c10::DispatchKey::Functionalize) &&
         !x.unsafeGetTensorImpl()->has_symbolic_sizes_strides();
}

bool fused_kernels_serve(const at::Tensor& x) {
  // CPU kernels on plain CPU tensors; torch.func transforms and forward-mode AD take the composite
  // of native ops, as the ERA op does.
  const auto t = x.scalar_type();
  return x.device().is_cpu() && (t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16) &&
         !needs_composite(x);
}

// Today's general path: at::layer_norm with the normalised dims moved last (a copy when they are
// not innermost in memory). Serves layouts without a block structure, and CUDA.
at::Tensor normalize_moving_dims(const at::Tensor& x, const std::string& kind, int64_t cd) {
  if (kind == "layer") {
    // layer_norm normalises trailing dims; move the channels last (a view), and back.
    const auto last = x.dim() - 1;
    auto xt = cd == last ? x : x.movedim(cd, last);
    auto y = at::layer_norm(xt, {xt.size(last)}, std::nullopt, std::nullopt, cpu::kEraNormEps);
    // Back in x's layout: the per-group ERA kernels are fastest on long runs of one channel.
    return cd == last ? y : y.movedim(last, cd).contiguous(x.suggest_memory_format());
  }
  // With the channels at dim 1, layer_norm over the trailing (spatial) dims is instance norm: per
  // (sample, channel). Measured faster than group_norm(x, C) and instance_norm on CPU.
  auto xt = cd == 1 ? x : x.movedim(cd, 1);
  auto y = at::layer_norm(xt, xt.sizes().slice(2), std::nullopt, std::nullopt, cpu::kEraNormEps);
  return cd == 1 ? y : y.movedim(1, cd).contiguous(x.suggest_memory_format());
}

// The checked arguments of a normalisation and where it can run on x as it lies: blocks (in x's
// memory order) when the normalised dims are one block of them, null otherwise.
struct NormalizePlan {
  int64_t channel_dim;  // in [0, x.dim())
  std::optional<MemoryBlocks> blocks;
};

NormalizePlan plan_normalize(const at::Tensor& x, const std::string& kind, int64_t channel_dim) {
  TORCH_CHECK_VALUE(kind == "instance" || kind == "layer",
                    "torch_rational::era_normalize: normalize must be \"\", \"instance\" or \"layer\", got \"", kind,
                    "\"");
  TORCH_CHECK_VALUE(x.dim() >= 1, "torch_rational::era_normalize: normalize needs x with a channel dimension");
  TORCH_CHECK_INDEX(channel_dim >= -x.dim() && channel_dim < x.dim(), "torch_rational::era_normalize: channel_dim ",
                    channel_dim, " is out of range for x with ", x.dim(), " dimensions");
  const int64_t cd = channel_dim < 0 ? channel_dim + x.dim() : channel_dim;
  std::vector<bool> normalised(x.dim(), false);
  if (kind == "layer") {
    normalised[cd] = true;
  } else {
    TORCH_CHECK_VALUE(x.dim() >= 3, "torch_rational::era_normalize: normalize=\"instance\" needs x of shape "
                      "(N, C, *spatial), got ", x.sizes());
    TORCH_CHECK_VALUE(cd != 0, "torch_rational::era_normalize: normalize=\"instance\" needs channel_dim != 0 (dim "
                      "0 is the batch)");
    std::fill(normalised.begin() + 1, normalised.end(), true);  // the spatial dims: all but batch, channel
    normalised[cd] = false;
  }
  auto blocks = plain_tensor(x) && x.numel() > 0 ? memory_blocks(x, normalised) : std::nullopt;
  if (blocks && blocks->reduced == 1) blocks.reset();  // one element per statistic: nothing to gain
  return {cd, blocks};
}

// f on x's (O, R, I) memory-order view (contiguous), with the result put back through the same
// views, so it has x's strides.
template <typename F>
at::Tensor on_memory_blocks(const at::Tensor& x, const MemoryBlocks& blocks, F&& f) {
  const auto xp = x.permute(blocks.order);
  auto y3 = f(xp.view({blocks.outer, blocks.reduced, blocks.inner}));
  std::vector<int64_t> inverse(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) inverse[blocks.order[i]] = i;
  return y3.view(xp.sizes()).permute(inverse);
}

// CompositeImplicitAutograd: native layer_norm where the layout suits it, else the fused kernels
// (with their own autograd) or layer_norm on moved dims; on CPU and CUDA alike.
at::Tensor era_normalize_composite(const at::Tensor& x, c10::string_view kind_view, int64_t channel_dim) {
  const std::string kind(kind_view);
  if (kind.empty()) return x;
  const auto plan = plan_normalize(x, kind, channel_dim);
  const auto& blocks = plan.blocks;
  if (!blocks || (blocks->inner > 1 && !fused_kernels_serve(x)))
    return normalize_moving_dims(x, kind, plan.channel_dim);
  return on_memory_blocks(x, *blocks, [&](const at::Tensor& x3) {
    return blocks->inner == 1 ? at::layer_norm(x3.view({blocks->outer, blocks->reduced}), {blocks->reduced},
                                               std::nullopt, std::nullopt, cpu::kEraNormEps)
                              : MiddleNormalize::apply(x3);
  });
}

// ------------------------------------------------------------------------------------------------
// normalized_era: ERA of the normalised x. Where the fused kernels serve (CPU float32, one group,
// n <= 4 fractions, the normalised dims one block of x's memory order), one pass normalises each
// vector of x in registers on its way into ERA, and the backward is likewise one kernel: x is
// read once more than by ERA alone, and the normalised x is never stored. Elsewhere ERA of
// era_normalize, the same function.

cpu::EraGroupParams group_params(const at::Tensor& linear, const at::Tensor& fractions, double eps) {
  return {linear.const_data_ptr<float>(), fractions.const_data_ptr<float>(), static_cast<int>(fractions.size(-2)),
          static_cast<float>(eps)};
}

struct NormalizedEra : public torch::autograd::Function<NormalizedEra> {
  // x: the (O, R, I) view.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& linear,
                            const at::Tensor& fractions, double eps) {
    auto y = at::empty_like(x);
    auto mean = at::empty({x.size(0), x.size(2)}, x.options().dtype(at::kDouble));
    auto rstd = at::empty_like(mean);
    const auto lin = linear.contiguous(), fr = fractions.contiguous();
    middle_kernels().era_forward(x, group_params(lin, fr, eps), y, mean, rstd);
    ctx->save_for_backward({x, linear, fractions, mean, rstd});
    ctx->saved_data["eps"] = eps;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &linear = saved[1], &fractions = saved[2];
    const double eps = ctx->saved_data["eps"].toDouble();
    const auto& g = grad_outputs[0];
    torch::autograd::variable_list grads(4);
    if (at::GradMode::is_enabled()) {
      // The composite's gradients, built with a graph through g and the inputs (second derivatives).
      std::vector<at::Tensor> inputs;
      std::vector<size_t> which;
      for (size_t i = 0; i < 3; ++i)
        if (ctx->needs_input_grad(i)) {
          inputs.push_back(saved[i]);
          which.push_back(i);
        }
      const auto y = era(middle_normalize_composite(x), linear, fractions, eps, 1);
      const auto got = torch::autograd::grad({y}, inputs, {g}, /*retain_graph=*/true, /*create_graph=*/true,
                                             /*allow_unused=*/true);
      for (size_t j = 0; j < which.size(); ++j) grads[which[j]] = got[j];
      return grads;
    }
    const bool want_params = ctx->needs_input_grad(1) || ctx->needs_input_grad(2);
    const auto lin = linear.contiguous(), fr = fractions.contiguous();
    auto grad_x = at::empty_like(x);  // written in any case: the kernel's buffer between its passes
    std::vector<double> grad_params(want_params ? 2 + 4 * fr.size(-2) : 0);
    middle_kernels().era_backward(g.contiguous(), x, saved[3], saved[4], group_params(lin, fr, eps), grad_x,
                                  want_params ? grad_params.data() : nullptr);
    if (ctx->needs_input_grad(0)) grads[0] = grad_x;
    if (want_params) {
      const auto all = at::tensor(grad_params, x.options().dtype(at::kDouble)).to(linear.scalar_type());
      grads[1] = all.narrow(0, 0, 2).view(linear.sizes());
      grads[2] = all.narrow(0, 2, all.size(0) - 2).view(fractions.sizes());
    }
    return grads;
  }
};

// The fused kernels' case (args already checked as era's: cfg).
bool fused_era_serves(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
                      const EraConfig& cfg) {
  return fused_kernels_serve(x) && x.scalar_type() == at::kFloat && linear.scalar_type() == at::kFloat &&
         fractions.scalar_type() == at::kFloat && cfg.groups == 1 && cfg.n <= cpu::kMaxFusedEraFractions &&
         !needs_composite(linear, fractions) && plain_tensor(linear) && plain_tensor(fractions);
}

at::Tensor normalized_era_composite(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions,
                                    double eps, int64_t channel_dim, c10::string_view kind_view) {
  const std::string kind(kind_view);
  if (!kind.empty()) {
    const auto plan = plan_normalize(x, kind, channel_dim);
    const auto cfg = check_era_args(x, linear, fractions, eps, channel_dim);
    if (plan.blocks && fused_era_serves(x, linear, fractions, cfg))
      return on_memory_blocks(x, *plan.blocks, [&](const at::Tensor& x3) {
        return NormalizedEra::apply(x3, linear, fractions, eps);
      });
  }
  return era(era_normalize(x, kind, channel_dim), linear, fractions, eps, channel_dim);
}

}  // namespace

at::Tensor era_normalize(const at::Tensor& x, const std::string& kind, int64_t channel_dim) {
  static const auto op = typed_op<at::Tensor(const at::Tensor&, c10::string_view, int64_t)>("era_normalize");
  return op.call(x, kind, channel_dim);
}

at::Tensor normalized_era(const at::Tensor& x, const at::Tensor& linear, const at::Tensor& fractions, double eps,
                          int64_t channel_dim, const std::string& kind) {
  static const auto op = typed_op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, int64_t,
                                             c10::string_view)>("normalized_era");
  return op.call(x, linear, fractions, eps, channel_dim, kind);
}

TORCH_LIBRARY_FRAGMENT(torch_rational, m) {
  m.def("era_normalize(Tensor x, str kind, int channel_dim) -> Tensor", &era_normalize_composite);
  m.def(
      "normalized_era(Tensor x, Tensor linear, Tensor fractions, float eps, int channel_dim, str normalize) "
      "-> Tensor",
      &normalized_era_composite);
}

}  // namespace torch_rational
