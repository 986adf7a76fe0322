// Which per-capability build of the vectorised CPU kernels (the *_kernel_vec.cpp files, compiled
// once each for DEFAULT, AVX2 and AVX512) an op uses: one choice for every op.
#pragma once

#include <ATen/Context.h>

#include <string>

#include "ops/cpu/vec_tables.h"

namespace torch_rational {
namespace cpu {

enum class VecLevel { Default, Avx2, Avx512 };

// The widest kernel set that both torch's CPU capability (at::get_cpu_capability(), which
// ATEN_CPU_CAPABILITY can lower) and this CPU allow. Computed once.
inline VecLevel vec_level() {
  static const VecLevel level = [] {
#if defined(__x86_64__) || defined(_M_X64)
    const std::string cap = at::get_cpu_capability();
    if (cap.find("AVX512") != std::string::npos && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512dq"))
      return VecLevel::Avx512;
    if ((cap.find("AVX2") != std::string::npos || cap.find("AVX512") != std::string::npos) &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return VecLevel::Avx2;
#endif
    return VecLevel::Default;
  }();
  return level;
}

// The table of vec_level() among an op's three builds (x86-64 only: elsewhere only DEFAULT is
// compiled, so callers use it directly).
template <typename Table>
const Table& pick_vec_table(const Table& (*default_table)(), const Table& (*avx2_table)(),
                            const Table& (*avx512_table)()) {
  switch (vec_level()) {
    case VecLevel::Avx512: return avx512_table();
    case VecLevel::Avx2: return avx2_table();
    case VecLevel::Default: break;
  }
  return default_table();
}

}  // namespace cpu
}  // namespace torch_rational

// The chosen build of an op's vector table (see vec_tables.h): the op's kernel file keeps it in a
// static, `static const Table& t = TR_PICK_VEC_TABLE(accessor);`.
#if defined(__x86_64__) || defined(_M_X64)
#define TR_PICK_VEC_TABLE(accessor) \
  ::torch_rational::cpu::pick_vec_table(&DEFAULT::accessor, &AVX2::accessor, &AVX512::accessor)
#else
#define TR_PICK_VEC_TABLE(accessor) DEFAULT::accessor()
#endif
