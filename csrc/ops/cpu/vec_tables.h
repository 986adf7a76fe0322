// The one mechanism for every op's vector table (rational, ERA, PWLU): a *_kernel_vec.cpp, compiled
// once per CPU capability like ATen's kernels, defines `const Table& accessor()` in its
// CPU_CAPABILITY namespace; its header declares the three builds with TR_DECLARE_VEC_TABLES
// (inside torch_rational::cpu), and the op's kernel file picks one with TR_PICK_VEC_TABLE
// (vec_dispatch.h). No ATen include: the *_kernel_vec.cpp files include this too.
#pragma once

#define TR_DECLARE_VEC_TABLES(Table, accessor) \
  namespace DEFAULT {                          \
  const Table& accessor();                     \
  }                                            \
  namespace AVX2 {                             \
  const Table& accessor();                     \
  }                                            \
  namespace AVX512 {                           \
  const Table& accessor();                     \
  }
