// The same kernels with AVX512-VNNI dot products on 256-bit registers (vpdpbusd replaces
// maddubs + madd). Compiled with the AVX2 flags plus the target pragma below; chosen at run time only on
// CPUs with avx512vnni and avx512vl.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#endif
#define SLUICE_X86_NS vnni
#define SLUICE_X86_VNNI 1
#include "kernels_x86.inc"

namespace sluice::engine {
const kernel_table* vnni_kernels() {
  static const kernel_table t{"avx512vnni",  vnni::matmul,   vnni::quantize_q8, vnni::dot_f16,
                              vnni::dot_f32, vnni::axpy_f16, vnni::axpy_f32, vnni::to_f16,
                              vnni::round_f16, vnni::attn_scores_f16, vnni::attn_mix_f16, vnni::silu_mul,
                              true};
  return &t;
}
}  // namespace sluice::engine
#if defined(__clang__)
#pragma clang attribute pop
#endif
