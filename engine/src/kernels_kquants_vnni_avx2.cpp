// The Q5_0, Q5_1, Q4_K, Q5_K and Q6_K matmuls with AVX512-VNNI dot products (vpdpbusd replaces maddubs + madd;
// prefill on 512-bit vectors, whose 32 registers hold 4 x 3 tiles). Compiled with the AVX2 flags plus the target
// pragma below; called only from the VNNI kernel table, which runs only on CPUs with avx512vnni and avx512vl.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
// g++ 12's 512-bit intrinsics start from _mm512_undefined_*(), which -Wmaybe-uninitialized reports once inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#define SLUICE_X86_NS kquants_vnni
#define SLUICE_X86_VNNI 1
#include "kernels_kquants_x86.inc"

namespace sluice::engine {
void matmul_extra_vnni(const matmul_args& m) { kquants_vnni::matmul(m); }
}  // namespace sluice::engine
#if defined(__clang__)
#pragma clang attribute pop
#endif
