// How the ops meet the dispatcher, written once for every family: every op `<f>` comes with a
// backward op `<f>_backward` (ops/<f>.cpp defines both schemas), so the C++ entry points look the
// ops up by name and each dispatch key's file registers the two kernels together.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <string>

namespace torch_rational {

// The op `torch_rational::<name>` with the C++ signature Fn, for an entry point to keep in a
// function-local static (the lookup is by string, so it is done once).
template <typename Fn>
c10::TypedOperatorHandle<Fn> typed_op(const std::string& name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(("torch_rational::" + name).c_str(), "").typed<Fn>();
}

// Registers the kernels of op `<name>` and of `<name>_backward` at the dispatch key of `m`
// (the last lines of every cpu/, cuda/ and autograd/ kernel file).
template <typename Forward, typename Backward>
void impl_op_and_backward(torch::Library& m, const std::string& name, Forward* forward, Backward* backward) {
  m.impl(name.c_str(), forward);
  m.impl((name + "_backward").c_str(), backward);
}

}  // namespace torch_rational
