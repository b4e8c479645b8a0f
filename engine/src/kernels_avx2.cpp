// AVX2/FMA/F16C kernels (this file is compiled with -mavx2 -mfma -mf16c; cpu_kernels() uses it only
// when the CPU reports those features). The bodies live in kernels_x86.inc.
#define SLUICE_X86_NS avx2
#define SLUICE_X86_VNNI 0
#include "kernels_x86.inc"

namespace sluice::engine {
const kernel_table* avx2_kernels() {
  static const kernel_table t{"avx2",        avx2::matmul,   avx2::quantize_q8, avx2::dot_f16,
                              avx2::dot_f32, avx2::axpy_f16, avx2::axpy_f32, avx2::to_f16,
                              avx2::round_f16, avx2::attn_scores_f16, avx2::attn_mix_f16, avx2::silu_mul,
                              false};
  return &t;
}
}  // namespace sluice::engine
