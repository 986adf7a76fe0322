#include "ops/era_normalize.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <vector>

#include "ops/autograd/elementwise_autograd.h"  // needs_composite

namespace torch_rational {

namespace {

constexpr double kNormEps = 1e-5;  // as torch.nn.InstanceNorm / LayerNorm

// ------------------------------------------------------------------------------------------------
// Layouts. In x's memory order (outermost dim first), the normalised dims are usually one block:
// x is then (outer O, reduced R, inner I) contiguous elements. I == 1 (instance norm of NCHW, layer
// norm over the channels of channels_last or of (T, C)) is at::layer_norm's layout, without a copy.
// I > 1 (layer norm over the channels of NCHW, instance norm of channels_last) is no native
// kernel's layout: at::layer_norm needs it transposed, which copies x and its gradient forth and
// back (5.8x the ERA op itself, scripts/compare_era_normalize.py); the fused kernels below
// normalise it in place, vectorised across the I inner columns.

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

// Columns of one task: a slice of R rows x this many columns stays in the L2 cache across the
// kernels' passes (statistics, then the write), so x and the gradient are read from memory once.
int64_t columns_per_task(int64_t reduced, int64_t inner, size_t element_size) {
  constexpr int64_t kSliceBytes = 256 * 1024;
  constexpr int64_t kVectorColumns = 16;  // one AVX-512 register of float
  const int64_t fit = kSliceBytes / static_cast<int64_t>(element_size) / std::max<int64_t>(reduced, 1);
  const int64_t columns = std::max(kVectorColumns, fit / kVectorColumns * kVectorColumns);
  return std::min(columns, inner);
}

// Calls body(offset of the slice's first element in x, offset of its first column in the (O, I)
// statistics, number of columns) for every (outer, column block) task, in parallel. Each column is reduced by one task in a fixed order, so the
// results do not depend on the thread count.
template <typename Body>
void for_each_slice(int64_t outer, int64_t reduced, int64_t inner, size_t element_size, const Body& body) {
  const int64_t columns = columns_per_task(reduced, inner, element_size);
  const int64_t blocks = (inner + columns - 1) / columns;
  at::parallel_for(0, outer * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t o = task / blocks, first = (task % blocks) * columns;
      body(o * reduced * inner + first, o * inner + first, std::min(columns, inner - first));
    }
  });
}

// y = (x - mean) * rstd per column of each (R, I) slice; mean and rstd (O, I) float64. Sums in
// float64 (two passes: the mean, then the squared deviations, as layer_norm), the write in the
// op math type.
template <typename scalar_t>
void middle_forward_kernel(const at::Tensor& x, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t R = x.size(1), I = x.size(2);
  const scalar_t* x_base = x.const_data_ptr<scalar_t>();
  scalar_t* y_base = y.mutable_data_ptr<scalar_t>();
  double* mean_base = mean.mutable_data_ptr<double>();
  double* rstd_base = rstd.mutable_data_ptr<double>();
  for_each_slice(x.size(0), R, I, sizeof(scalar_t), [&](int64_t offset, int64_t stat, int64_t n) {
    const scalar_t* __restrict__ xs = x_base + offset;
    scalar_t* __restrict__ ys = y_base + offset;
    double* __restrict__ m = mean_base + stat;
    double* __restrict__ s = rstd_base + stat;
    std::fill(m, m + n, 0.0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i) m[i] += static_cast<double>(xs[r * I + i]);
    for (int64_t i = 0; i < n; ++i) m[i] /= static_cast<double>(R);
    std::fill(s, s + n, 0.0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(xs[r * I + i]) - m[i];
        s[i] += d * d;
      }
    for (int64_t i = 0; i < n; ++i) s[i] = 1.0 / std::sqrt(s[i] / static_cast<double>(R) + kNormEps);
    std::vector<opmath_t> m_op(m, m + n), s_op(s, s + n);
    const opmath_t* __restrict__ mo = m_op.data();
    const opmath_t* __restrict__ so = s_op.data();
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i)
        ys[r * I + i] = static_cast<scalar_t>((static_cast<opmath_t>(xs[r * I + i]) - mo[i]) * so[i]);
  });
}

// grad_x = rstd * (g - mean_R(g) - xhat * mean_R(g * xhat)), xhat = (x - mean) * rstd: the
// derivative of the normalisation (no affine), with the column sums in float64.
template <typename scalar_t>
void middle_backward_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& rstd,
                            at::Tensor& grad_x) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t R = x.size(1), I = x.size(2);
  const scalar_t* g_base = g.const_data_ptr<scalar_t>();
  const scalar_t* x_base = x.const_data_ptr<scalar_t>();
  scalar_t* gx_base = grad_x.mutable_data_ptr<scalar_t>();
  const double* mean_base = mean.const_data_ptr<double>();
  const double* rstd_base = rstd.const_data_ptr<double>();
  for_each_slice(x.size(0), R, I, sizeof(scalar_t), [&](int64_t offset, int64_t stat, int64_t n) {
    const scalar_t* __restrict__ gs = g_base + offset;
    const scalar_t* __restrict__ xs = x_base + offset;
    scalar_t* __restrict__ gxs = gx_base + offset;
    const double* __restrict__ m = mean_base + stat;
    const double* __restrict__ s = rstd_base + stat;
    std::vector<double> sums(2 * n, 0.0);
    double* __restrict__ sum_g = sums.data();
    double* __restrict__ sum_gxhat = sums.data() + n;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i) {
        const double gv = static_cast<double>(gs[r * I + i]);
        sum_g[i] += gv;
        sum_gxhat[i] += gv * ((static_cast<double>(xs[r * I + i]) - m[i]) * s[i]);
      }
    // grad_x = s * g - s * mean(g) - xhat * s * mean(g xhat), as a * g + b + c * x per column.
    std::vector<opmath_t> coef(3 * n);
    opmath_t* __restrict__ a = coef.data();
    opmath_t* __restrict__ b = coef.data() + n;
    opmath_t* __restrict__ c = coef.data() + 2 * n;
    for (int64_t i = 0; i < n; ++i) {
      const double mg = sum_g[i] / static_cast<double>(R), mgx = sum_gxhat[i] / static_cast<double>(R);
      a[i] = static_cast<opmath_t>(s[i]);
      c[i] = static_cast<opmath_t>(-mgx * s[i] * s[i]);
      b[i] = static_cast<opmath_t>(-s[i] * mg + mgx * s[i] * s[i] * m[i]);
    }
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < n; ++i)
        gxs[r * I + i] = static_cast<scalar_t>(a[i] * static_cast<opmath_t>(gs[r * I + i]) + b[i] +
                                               c[i] * static_cast<opmath_t>(xs[r * I + i]));
  });
}

// The same normalisation as differentiable ATen ops, on the (O, R, I) view.
at::Tensor middle_normalize_composite(const at::Tensor& x) {
  auto var_mean = at::var_mean(x, {1}, /*correction=*/0, /*keepdim=*/true);
  return (x - std::get<1>(var_mean)) * at::rsqrt(std::get<0>(var_mean) + kNormEps);
}

// The fused kernels' first derivative; with create_graph the gradient is the composite's, built
// with a graph, so it can be differentiated again (as every op of this library).
struct MiddleNormalize : public torch::autograd::Function<MiddleNormalize> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    auto y = at::empty_like(x);
    auto mean = at::empty({x.size(0), x.size(2)}, x.options().dtype(at::kDouble));
    auto rstd = at::empty_like(mean);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "era_normalize",
                                    [&] { middle_forward_kernel<scalar_t>(x, y, mean, rstd); });
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
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "era_normalize_backward",
                                    [&] { middle_backward_kernel<scalar_t>(gc, x, saved[1], saved[2], grad_x); });
    return {grad_x};
  }
};

bool fused_kernels_serve(const at::Tensor& x) {
  // CPU kernels on plain CPU tensors; torch.func transforms, forward-mode AD and tensor subclasses
  // (fake tensors of torch.compile) take the composite of native ops, as the ERA op does.
  const auto t = x.scalar_type();
  return x.device().is_cpu() && (t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16) &&
         !x.key_set().has(c10::DispatchKey::Python) && !needs_composite(x);
}

// Today's general path: at::layer_norm with the normalised dims moved last (a copy when they are
// not innermost in memory). Serves layouts without a block structure, and CUDA.
at::Tensor normalize_moving_dims(const at::Tensor& x, const std::string& kind, int64_t cd) {
  if (kind == "layer") {
    // layer_norm normalises trailing dims; move the channels last (a view), and back.
    const auto last = x.dim() - 1;
    auto xt = cd == last ? x : x.movedim(cd, last);
    auto y = at::layer_norm(xt, {xt.size(last)}, std::nullopt, std::nullopt, kNormEps);
    // Back in x's layout: the per-group ERA kernels are fastest on long runs of one channel.
    return cd == last ? y : y.movedim(last, cd).contiguous(x.suggest_memory_format());
  }
  // With the channels at dim 1, layer_norm over the trailing (spatial) dims is instance norm: per
  // (sample, channel). Measured faster than group_norm(x, C) and instance_norm on CPU.
  auto xt = cd == 1 ? x : x.movedim(cd, 1);
  auto y = at::layer_norm(xt, xt.sizes().slice(2), std::nullopt, std::nullopt, kNormEps);
  return cd == 1 ? y : y.movedim(1, cd).contiguous(x.suggest_memory_format());
}

// CompositeImplicitAutograd: native layer_norm where the layout suits it, else the fused kernels
// (with their own autograd) or layer_norm on moved dims; on CPU and CUDA alike.
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
  const auto blocks = x.numel() > 0 ? memory_blocks(x, normalised) : std::nullopt;
  if (!blocks || blocks->reduced == 1 || (blocks->inner > 1 && !fused_kernels_serve(x)))
    return normalize_moving_dims(x, kind, cd);
  // x in memory order (a view), as (O, R, I); the result goes back through the same views, so it
  // has x's strides.
  const auto xp = x.permute(blocks->order);
  auto y3 = blocks->inner == 1
                ? at::layer_norm(xp.view({blocks->outer, blocks->reduced}), {blocks->reduced}, std::nullopt,
                                 std::nullopt, kNormEps)
                : MiddleNormalize::apply(xp.view({blocks->outer, blocks->reduced, blocks->inner}));
  std::vector<int64_t> inverse(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) inverse[blocks->order[i]] = i;
  return y3.view(xp.sizes()).permute(inverse);
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
