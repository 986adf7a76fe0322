// PWLU's statistic-based realignment (Zhou et al., ICCV 2021), written once for the Python and C++
// PWLU modules: the running input statistics per group and the parameters set from the init
// function on given bounds. All through the dispatcher (torch_rational::pwlu_*).
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <tuple>

#include "torch_rational_export.h"

namespace torch_rational {

// (heights (G, N+1), bounds (G, 2), slopes (G, 2)) in float64 on the CPU: the named init function
// at the N+1 uniform breakpoints of [left_g, right_g] (the last exactly right_g), and its
// derivative at the two bounds by a central difference with a step of 1e-3 of a piece (so a kink of
// init near a bound, relu at 0, only shows when it is that close).
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_init_parameters(
    const std::string& init, const at::Tensor& left, const at::Tensor& right, int64_t num_pieces);

// The same on the realigned bounds mean -/+ 3 std (per group); a constant input (std 0) keeps a
// small, scale-aware half-width 1e-3 * max(|mean|, 1) instead of L == R.
TORCH_RATIONAL_API std::tuple<at::Tensor, at::Tensor, at::Tensor> pwlu_realigned_parameters(
    const std::string& init, const at::Tensor& running_mean, const at::Tensor& running_std, int64_t num_pieces);

// One statistics step on x, in place: per group (contiguous channel blocks along channel_dim) the
// mean and biased std of x in float64; the first step (num_realign_calls == 0) sets the running
// statistics, later ones do stat = momentum * stat + (1 - momentum) * batch_stat; then
// num_realign_calls += 1.
TORCH_RATIONAL_API void pwlu_update_statistics(at::Tensor& running_mean, at::Tensor& running_std,
                                               at::Tensor& num_realign_calls, const at::Tensor& x,
                                               int64_t channel_dim, double momentum);

}  // namespace torch_rational
