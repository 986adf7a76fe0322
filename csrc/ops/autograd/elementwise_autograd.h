// What the Autograd kernels of the three families share: the autograd Function of the fused first
// derivative (FusedFunction) and the rules for when the composite serves instead.
//
// Forward ops: the fused kernel and a torch::autograd::Function whose backward is the family's
// backward op (FusedFunction), except where that cannot serve (needs_composite): inside a torch.func transform,
// whose wrapper tensors a C++ Function rejects, and in forward-mode AD, which the fused kernels do
// not implement. There the op runs as its differentiable composite (csrc/ops/composite/).
//
// Backward ops: when their result must itself be differentiable (grad mode on, i.e. create_graph=True,
// and an input that requires grad, or the cases above), the gradients are those of the composite,
// computed by torch's autograd with a graph: every derivative of every order exists. Otherwise (a
// plain backward pass runs with grad mode off) the fused backward kernel, below autograd.
#pragma once

#include <ATen/functorch/DynamicLayer.h>
#include <torch/autograd.h>

#include <array>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace torch_rational {

namespace detail {

// How FusedFunction keeps a non-tensor argument until the backward: a string view as its own
// string (the caller's string does not outlive the forward call), anything else as it is.
inline std::string saved_arg(c10::string_view v) {
  return std::string(v.data(), v.size());
}
template <typename T>
T saved_arg(const T& v) {
  return v;
}

template <typename Fn>
struct ArgumentTypes;
template <typename R, typename... Args>
struct ArgumentTypes<R (*)(Args...)> {
  using type = std::tuple<std::decay_t<Args>...>;
};

// The saved form of the arguments of Fn from index First on.
template <typename Fn, size_t First, typename Indices>
struct SavedArguments;
template <typename Fn, size_t First, size_t... I>
struct SavedArguments<Fn, First, std::index_sequence<I...>> {
  using Args = typename ArgumentTypes<Fn>::type;
  using type = std::tuple<decltype(saved_arg(std::declval<std::tuple_element_t<First + I, Args>>()))...>;
};

}  // namespace detail

// The torch::autograd::Function of every family's forward op. Forward is the op's C++ entry point
// (ops/<f>.h), whose first N arguments are the tensors it is differentiable in; Backward is its
// backward op, called as Backward(grad_output, <the forward's arguments>, output_mask of N). The
// forward runs the op below autograd and saves the N tensors (save_for_backward) and the other
// arguments (ctx->saved_data); the backward returns the gradient of each of the N tensors whose
// gradient autograd needs, and none for the other arguments.
template <auto Forward, auto Backward, size_t N>
class FusedFunction : public torch::autograd::Function<FusedFunction<Forward, Backward, N>> {
  static constexpr size_t kArgs = std::tuple_size_v<typename detail::ArgumentTypes<decltype(Forward)>::type>;
  using Rest = std::make_index_sequence<kArgs - N>;
  using SavedRest = typename detail::SavedArguments<decltype(Forward), N, Rest>::type;

  template <typename Args, size_t... I>
  static torch::autograd::variable_list tensors(const Args& args, std::index_sequence<I...>) {
    return {std::get<I>(args)...};
  }
  template <typename Args, size_t... I>
  static SavedRest rest(const Args& args, std::index_sequence<I...>) {
    return SavedRest(detail::saved_arg(std::get<N + I>(args))...);
  }
  template <size_t... T, size_t... R>
  static auto run_backward(const at::Tensor& grad, const torch::autograd::variable_list& saved,
                           const SavedRest& rest, const std::array<bool, N>& mask, std::index_sequence<T...>,
                           std::index_sequence<R...>) {
    return Backward(grad, saved[T]..., std::get<R>(rest)..., mask);
  }

 public:
  template <typename... Args>
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const Args&... args) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor y = Forward(args...);
    const auto all = std::forward_as_tuple(args...);
    ctx->save_for_backward(tensors(all, std::make_index_sequence<N>{}));
    ctx->saved_data["arguments"] = c10::IValue(rest(all, Rest{}));
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto saved_rest = ctx->saved_data["arguments"].to<SavedRest>();
    std::array<bool, N> mask;
    for (size_t i = 0; i < N; ++i) mask[i] = ctx->needs_input_grad(i);
    at::Tensor grad = grad_outputs[0];
    if (!grad.defined()) grad = at::zeros_like(saved[0]);
    const auto grads = run_backward(grad, saved, saved_rest, mask, std::make_index_sequence<N>{}, Rest{});
    // One entry per forward argument: the wanted gradients, undefined for everything else.
    torch::autograd::variable_list out(kArgs);
    std::apply([&](const auto&... g) {
      size_t i = 0;
      ((out[i] = mask[i] ? g : at::Tensor(), ++i), ...);
    }, grads);
    return out;
  }
};

template <typename... Tensors>
bool needs_composite(const Tensors&... inputs) {
  if (at::functorch::maybeCurrentDynamicLayer().has_value()) return true;
  return (... || (inputs.defined() && inputs._fw_grad(/*level=*/0).defined()));
}

// The Autograd kernel of a backward op. `fused()` calls the op below autograd; `composite(inputs)`
// evaluates the family's forward composite at the given inputs. Returns the fused op's tuple type:
// the gradient of each input whose mask entry is set, an empty (0,) tensor for the others.
template <size_t N, typename Fused, typename Composite>
auto backward_op_autograd(Fused&& fused, const at::Tensor& grad_output, std::array<at::Tensor, N> inputs,
                          const std::array<bool, N>& mask, Composite&& composite) {
  const bool differentiable =
      std::apply([&](const auto&... in) { return needs_composite(grad_output, in...); }, inputs) ||
      (at::GradMode::is_enabled() &&
       std::apply([&](const auto&... in) { return (grad_output.requires_grad() || ... || in.requires_grad()); },
                  inputs));
  if (!differentiable) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return fused();
  }
  // Inputs whose gradient is asked for but that do not require grad get a leaf of their own (their
  // gradient is still wanted, it just has no history to connect to).
  torch::autograd::variable_list wrt;
  for (size_t i = 0; i < N; ++i) {
    if (!mask[i]) continue;
    if (!inputs[i].requires_grad()) inputs[i] = inputs[i].detach().requires_grad_(true);
    wrt.push_back(inputs[i]);
  }
  torch::autograd::variable_list grads;
  if (!wrt.empty()) {
    const at::Tensor y = composite(inputs);
    grads = torch::autograd::grad({y}, wrt, {grad_output}, /*retain_graph=*/true, /*create_graph=*/true,
                                  /*allow_unused=*/true);
  }
  std::array<at::Tensor, N> out;
  for (size_t i = 0, k = 0; i < N; ++i) {
    if (!mask[i]) {
      out[i] = inputs[i].new_empty({0});
      continue;
    }
    const at::Tensor& g = grads[k++];
    out[i] = g.defined() ? g : at::zeros_like(inputs[i], at::MemoryFormat::Contiguous);
  }
  return std::apply([](auto&... g) { return decltype(fused())(g...); }, out);
}

}  // namespace torch_rational
