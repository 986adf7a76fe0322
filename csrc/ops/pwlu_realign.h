// PWLU's statistic-based realignment (Zhou et al., ICCV 2021), written once for the Python and C++
// PWLU modules: the running input statistics per group and the parameters set from the init
// function on given bounds. The ops go through the dispatcher (torch_rational::pwlu_*).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

#include "ops/named_functions.h"
#include "torch_rational_export.h"

namespace torch_rational {

// Setting the parameters from init is split in two ops around init's evaluation, because a Python
// callable cannot enter an op: pwlu_init_points gives the points init must be evaluated at,
// pwlu_parameters_from_values turns init's values there into the parameters. The modules of both
// APIs (and pwlu_init_parameters below) evaluate init in between, so names and callables share
// the one implementation of this math.

// Where init is evaluated for the bounds [left_g, right_g] of each group: (G, N+5) float64 on the
// CPU; columns 0..N the N+1 uniform breakpoints (column N exactly right_g), then L - h, L + h,
// R - h, R + h for the derivative at the bounds, a central difference with a step h of 1e-3 of a
// piece (so a kink of init near a bound, relu at 0, only shows when it is that close).
TORCH_RATIONAL_API at::Tensor pwlu_init_points(const at::Tensor& left, const at::Tensor& right, int64_t num_pieces);

// (heights (G, N+1), bounds (G, 2), slopes (G, 2)) in float64 on the CPU from `values`, init at
// `points` (both (G, N+5), as pwlu_init_points gives them).
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_parameters_from_values(
    const at::Tensor& points, const at::Tensor& values);

// The realigned bounds (left, right) (each (G,), float64, CPU): mean -/+ 3 std per group; a
// constant input (std 0) keeps a small, scale-aware half-width 1e-3 * max(|mean|, 1) instead of
// L == R.
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor> pwlu_realigned_bounds(const at::Tensor& running_mean,
                                                                           const at::Tensor& running_std);

// The three steps with a C++ function (a named one: init_function_or_named in ops/named_functions.h):
// the parameters from init on [left_g, right_g] ...
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_init_parameters(
    const InitFunction& init, const at::Tensor& left, const at::Tensor& right, int64_t num_pieces);
// ... and on the realigned bounds.
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_realigned_parameters(
    const InitFunction& init, const at::Tensor& running_mean, const at::Tensor& running_std, int64_t num_pieces);

// One statistics step on x, in place: per group (contiguous channel blocks along channel_dim) the
// mean and biased std of x in float64; the first step (num_realign_calls == 0) sets the running
// statistics, later ones do stat = momentum * stat + (1 - momentum) * batch_stat; then
// num_realign_calls += 1.
TORCH_RATIONAL_API void pwlu_update_statistics(at::Tensor& running_mean, at::Tensor& running_std,
                                               at::Tensor& num_realign_calls, const at::Tensor& x,
                                               int64_t channel_dim, double momentum);

}  // namespace torch_rational
