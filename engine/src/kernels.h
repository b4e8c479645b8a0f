// CPU compute kernels behind one function table, chosen once at run time: AVX2/FMA/F16C when the CPU has
// them (kernels_avx2.cpp), else the portable scalar versions (kernels_scalar.cpp), which are also the
// reference the SIMD ones are tested against. What must not go in here: threading, model structure.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensor_types.h"

namespace sluice::engine {

// y[t * ldy + r] (+)= dot(W[r, :], x[t, :]) for rows r in [r0, r1) and tokens t in [0, nt).
// W: (rows, k) in `type`, row r at w + r * row_bytes, read in place from the model file.
// Float weights read xf (nt, ldxf floats); quantized ones read xq (nt, ldxq blocks of k / 32).
struct matmul_args {
  tensor_type type = tensor_type::f32;
  const uint8_t* w = nullptr;
  size_t row_bytes = 0;
  int k = 0;
  int r0 = 0, r1 = 0;
  int nt = 0;
  const float* xf = nullptr;
  int ldxf = 0;
  const block_q8_act* xq = nullptr;
  int ldxq = 0;
  float* y = nullptr;
  int ldy = 0;
  bool accumulate = false;  // y += (residual connections) instead of y =
  // Rows [0, packed_rows) are interleaved by 8 as weight_packing.h lays them out (tables with reads_packed
  // only; a multiple of 8), rows from packed_rows on are plain. 0: every row plain.
  int packed_rows = 0;
};

inline bool needs_q8_activations(tensor_type t) {
  return t != tensor_type::f32 && t != tensor_type::f16 && t != tensor_type::bf16;
}
// Q5_0, Q5_1 and the K-quants: their dot products and dequantization (kernels_kquants.cpp, one portable
// implementation for every kernel table; the SIMD tables hand these types to it).
inline bool is_extra_quant(tensor_type t) {
  return t == tensor_type::q5_0 || t == tensor_type::q5_1 || t == tensor_type::q4_k || t == tensor_type::q5_k ||
         t == tensor_type::q6_k;
}
// dot(W row, x) for one row of an extra type against k / 32 blocks of Q8 activations.
float dot_row_extra(tensor_type t, const uint8_t* w, const block_q8_act* x, int k);
void matmul_extra(const matmul_args& m);
void matmul_extra_avx2(const matmul_args& m);  // the same in AVX2 (kernels_kquants_avx2.cpp); AVX2 CPUs only
void matmul_extra_vnni(const matmul_args& m);  // and with AVX512-VNNI (kernels_kquants_vnni_avx2.cpp)
void dequantize_row_extra(tensor_type t, const uint8_t* src, float* dst, int k);

struct kernel_table {
  const char* name;
  void (*matmul)(const matmul_args& a);
  // x: (k) floats -> k / 32 blocks; k % 32 == 0.
  void (*quantize_q8)(const float* x, block_q8_act* y, int k);
  // Attention over a KV row of n elements stored as f16 (uint16) or f32.
  float (*dot_f16)(const float* a, const uint16_t* b, int n);
  float (*dot_f32)(const float* a, const float* b, int n);
  void (*axpy_f16)(float alpha, const uint16_t* x, float* y, int n);  // y += alpha * x
  void (*axpy_f32)(float alpha, const float* x, float* y, int n);
  void (*to_f16)(const float* x, uint16_t* y, int n);  // round to nearest even (KV cache writes)
  void (*round_f16)(float* x, int n);                   // x = float(half(x)), in place
  // Attention over n cached positions of one KV head, rows of hd halves `stride` elements apart:
  // scores[j] = dot(q, k_j); out += sum_j p[j] * v_j (accumulates: the caller zeroes out, then calls once per
  // KV block, and gets the same bits as one call over all rows).
  void (*attn_scores_f16)(const float* q, const uint16_t* k, size_t stride, int n, int hd, float* scores);
  void (*attn_mix_f16)(const float* p, const uint16_t* v, size_t stride, int n, int hd, float* out);
  void (*silu_mul)(float* g, const float* u, int n);  // g = silu(g) * u (SwiGLU)
  // matmul reads Q4_1 and Q8_0 weights packed by weight_packing.h (matmul_args::packed_rows).
  bool reads_packed;
};

const kernel_table& scalar_kernels();
const kernel_table* avx2_kernels();  // nullptr when not compiled in
const kernel_table* vnni_kernels();  // AVX512-VNNI (256-bit) variant; nullptr when not compiled in
// The packed-layout matmul of the VNNI table (kernels_vnni_packed_avx2.cpp): rows [m.r0, min(m.r1,
// m.packed_rows)); AVX512-VNNI CPUs only.
void matmul_packed_vnni(const matmul_args& m);
// The best table the running CPU supports; SLUICE_ENGINE_KERNELS=scalar|avx2 caps the choice.
const kernel_table& cpu_kernels();

// g = gelu(g) * u (GeGLU), GELU in its tanh form looked up per half as llama.cpp does; one portable version.
void gelu_mul(float* g, const float* u, int n);

// Dequantizes one row of k elements (embedding lookups, norm weights).
void dequantize_row(tensor_type t, const uint8_t* src, float* dst, int k);
size_t row_bytes_of(tensor_type t, int k);

}  // namespace sluice::engine
