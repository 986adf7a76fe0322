// Autograd of the backward ops (rational_backward, era_backward, pwlu_backward), shared by the
// three families. They have no derivative yet: their kernel at the Autograd key runs the op below
// autograd and gives its outputs a grad_fn that raises, naming the op. Without it torch would warn
// that "no autograd kernel was registered ... this may lead to silently incorrect behavior" and a
// second derivative (create_graph=True, then differentiating the gradient) would silently come back
// as None. A backward pass with create_graph=False runs with grad mode off and creates no node.
// (The torchvision pattern, autograd/roi_align_kernel.cpp.)
#pragma once

#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>
#include <utility>

namespace torch_rational {

// Tag: a struct with `static constexpr const char* name` (the op's name) and `static constexpr auto
// op` (its C++ entry point, which goes through the dispatcher).
template <typename Tag>
class FirstOrderOnlyFunction : public torch::autograd::Function<FirstOrderOnlyFunction<Tag>> {
 public:
  template <typename... Args>
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext*, Args&&... args) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return std::apply([](auto&&... out) { return torch::autograd::variable_list{out...}; },
                      Tag::op(std::forward<Args>(args)...));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list) {
    TORCH_CHECK(false, "torch_rational::", Tag::name,
                ": second derivatives are not supported (the gradient this op computed was differentiated "
                "again, e.g. after torch.autograd.grad(..., create_graph=True))");
  }
};

template <typename Tag, typename Signature>
struct BackwardOpAutograd;

// The Autograd kernel: same signature as the op, outputs re-packed from the Function's list.
template <typename Tag, typename Result, typename... Args>
struct BackwardOpAutograd<Tag, Result (*)(Args...)> {
  static Result call(Args... args) {
    const auto out = FirstOrderOnlyFunction<Tag>::apply(args...);
    return unpack(out, std::make_index_sequence<std::tuple_size_v<Result>>{});
  }

 private:
  template <size_t... I>
  static Result unpack(const torch::autograd::variable_list& out, std::index_sequence<I...>) {
    return Result{out[I]...};
  }
};

// Registers the Autograd kernel of a backward op: TORCH_LIBRARY_IMPL(torch_rational, Autograd, m) {
// register_backward_op_autograd<Tag>(m); }
template <typename Tag>
void register_backward_op_autograd(torch::Library& m) {
  m.impl(Tag::name, &BackwardOpAutograd<Tag, std::remove_const_t<decltype(Tag::op)>>::call);
}

}  // namespace torch_rational
