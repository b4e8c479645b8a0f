// AVX2 matmuls for Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights (maddubs + madd dot products). Compiled with
// -mavx2 -mfma -mf16c (CMake: *_avx2.cpp) and called only where the CPU has them. The bodies live in
// kernels_kquants_x86.inc.
#define SLUICE_X86_NS kquants_avx2
#define SLUICE_X86_VNNI 0
#include "kernels_kquants_x86.inc"

namespace sluice::engine {
void matmul_extra_avx2(const matmul_args& m) { kquants_avx2::matmul(m); }
}  // namespace sluice::engine
