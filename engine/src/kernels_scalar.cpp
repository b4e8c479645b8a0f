// Portable scalar kernels: the reference for the SIMD versions and the fallback on CPUs without AVX2.
// Quantized dot products follow ggml's block formats: Q4_0/Q4_1/Q8_0 weights against Q8 activations.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels.h"

namespace sluice::engine {
namespace {

// Same rounding as ggml's Q8 activation quantization: q = round-half-even(x * 127 / amax), and the
// scale kept at fp16 precision, so integer dot products agree with llama.cpp's bit for bit per block.
void quantize_q8_scalar(const float* x, block_q8_act* y, int k) {
  for (int b = 0; b < k / qk; ++b) {
    const float* xb = x + b * qk;
    float amax = 0.0f;
    for (int i = 0; i < qk; ++i) amax = std::fmax(amax, std::fabs(xb[i]));
    float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int i = 0; i < qk; ++i) {
      int q = int(std::nearbyint(xb[i] * id));
      y[b].qs[i] = int8_t(q);
      sum += q;
    }
    y[b].d = fp16_to_f32(f32_to_fp16(d));
    y[b].s = fp16_to_f32(f32_to_fp16(d * float(sum)));
  }
}

float dot_row_f(tensor_type t, const uint8_t* w, const float* x, int k) {
  float acc = 0.0f;
  if (t == tensor_type::f32) {
    const float* wf = reinterpret_cast<const float*>(w);
    for (int i = 0; i < k; ++i) acc += wf[i] * x[i];
  } else {
    for (int i = 0; i < k; ++i) {
      uint16_t h;
      std::memcpy(&h, w + 2 * i, 2);
      acc += (t == tensor_type::f16 ? fp16_to_f32(h) : bf16_to_f32(h)) * x[i];
    }
  }
  return acc;
}

float dot_row_q(tensor_type t, const uint8_t* w, const block_q8_act* x, int nb) {
  float acc = 0.0f;
  for (int b = 0; b < nb; ++b) {
    const block_q8_act& a = x[b];
    int isum = 0;
    if (t == tensor_type::q8_0) {
      auto* wb = reinterpret_cast<const block_q8_0*>(w) + b;
      for (int i = 0; i < qk; ++i) isum += int(wb->qs[i]) * int(a.qs[i]);
      acc += fp16_to_f32(wb->d) * a.d * float(isum);
    } else if (t == tensor_type::q4_0) {
      auto* wb = reinterpret_cast<const block_q4_0*>(w) + b;
      for (int i = 0; i < qk / 2; ++i)
        isum += (int(wb->qs[i] & 0xf) - 8) * a.qs[i] + (int(wb->qs[i] >> 4) - 8) * a.qs[i + qk / 2];
      acc += fp16_to_f32(wb->d) * a.d * float(isum);
    } else {  // q4_1
      auto* wb = reinterpret_cast<const block_q4_1*>(w) + b;
      for (int i = 0; i < qk / 2; ++i)
        isum += int(wb->qs[i] & 0xf) * a.qs[i] + int(wb->qs[i] >> 4) * a.qs[i + qk / 2];
      acc += fp16_to_f32(wb->d) * a.d * float(isum) + fp16_to_f32(wb->m) * a.s;
    }
  }
  return acc;
}

void matmul_scalar(const matmul_args& m) {
  if (is_extra_quant(m.type)) return matmul_extra(m);
  bool q = needs_q8_activations(m.type);
  for (int t = 0; t < m.nt; ++t) {
    for (int r = m.r0; r < m.r1; ++r) {
      const uint8_t* w = m.w + size_t(r) * m.row_bytes;
      float v = q ? dot_row_q(m.type, w, m.xq + size_t(t) * m.ldxq, m.k / qk)
                  : dot_row_f(m.type, w, m.xf + size_t(t) * m.ldxf, m.k);
      float& out = m.y[size_t(t) * m.ldy + r];
      out = m.accumulate ? out + v : v;
    }
  }
}

float dot_f16_scalar(const float* a, const uint16_t* b, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) acc += a[i] * fp16_to_f32(b[i]);
  return acc;
}
float dot_f32_scalar(const float* a, const float* b, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
void axpy_f16_scalar(float alpha, const uint16_t* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * fp16_to_f32(x[i]);
}
void axpy_f32_scalar(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void to_f16_scalar(const float* x, uint16_t* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void round_f16_scalar(float* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = fp16_to_f32(f32_to_fp16(x[i]));
}

void attn_scores_f16_scalar(const float* q, const uint16_t* k, size_t stride, int n, int hd, float* scores) {
  for (int j = 0; j < n; ++j) scores[j] = dot_f16_scalar(q, k + size_t(j) * stride, hd);
}

void attn_mix_f16_scalar(const float* p, const uint16_t* v, size_t stride, int n, int hd, float* out) {
  for (int j = 0; j < n; ++j) axpy_f16_scalar(p[j], v + size_t(j) * stride, out, hd);
}

void silu_mul_scalar(float* g, const float* u, int n) {
  for (int i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// GELU, tanh form, in float (what ggml's table holds for every half).
float gelu_tanh(float x) {
  constexpr float sqrt_2_over_pi = 0.79788456080286535588f, coef_a = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(sqrt_2_over_pi * x * (1.0f + coef_a * x * x)));
}

}  // namespace

void gelu_mul(float* g, const float* u, int n) {
  // llama.cpp evaluates GELU through a table over all halves: the input rounded to f16, the result stored as
  // f16 (inputs beyond +-10 pass as 0 or x). The same here keeps Gemma's logits within float noise of its.
  static const std::vector<uint16_t> table = [] {
    std::vector<uint16_t> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = f32_to_fp16(gelu_tanh(fp16_to_f32(uint16_t(h))));
    return t;
  }();
  for (int i = 0; i < n; ++i) {
    const float x = g[i];
    const float y = x <= -10.0f ? 0.0f : x >= 10.0f ? x : fp16_to_f32(table[f32_to_fp16(x)]);
    g[i] = y * u[i];
  }
}

const kernel_table& scalar_kernels() {
  static const kernel_table t{"scalar",       matmul_scalar,   quantize_q8_scalar, dot_f16_scalar,
                              dot_f32_scalar, axpy_f16_scalar, axpy_f32_scalar,    to_f16_scalar,
                              round_f16_scalar, attn_scores_f16_scalar, attn_mix_f16_scalar, silu_mul_scalar,
                              false};
  return t;
}

const kernel_table& cpu_kernels() {
  static const kernel_table* chosen = [] {
    const char* force = std::getenv("SLUICE_ENGINE_KERNELS");
    if (force && std::strcmp(force, "scalar") == 0) return &scalar_kernels();
#if defined(__x86_64__)
    __builtin_cpu_init();
    bool allow_vnni = !(force && std::strcmp(force, "avx2") == 0);
    if (allow_vnni && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && vnni_kernels())
      return vnni_kernels();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && avx2_kernels()) return avx2_kernels();
#endif
    return &scalar_kernels();
  }();
  return *chosen;
}

size_t row_bytes_of(tensor_type t, int k) {
  switch (t) {
    case tensor_type::f32: return size_t(k) * 4;
    case tensor_type::f16: case tensor_type::bf16: return size_t(k) * 2;
    case tensor_type::q4_0: return size_t(k / qk) * sizeof(block_q4_0);
    case tensor_type::q4_1: return size_t(k / qk) * sizeof(block_q4_1);
    case tensor_type::q8_0: return size_t(k / qk) * sizeof(block_q8_0);
    case tensor_type::q5_0: return size_t(k / qk) * sizeof(block_q5_0);
    case tensor_type::q5_1: return size_t(k / qk) * sizeof(block_q5_1);
    case tensor_type::q4_k: return size_t(k / qk_k) * sizeof(block_q4_k);
    case tensor_type::q5_k: return size_t(k / qk_k) * sizeof(block_q5_k);
    case tensor_type::q6_k: return size_t(k / qk_k) * sizeof(block_q6_k);
  }
  return 0;
}

void dequantize_row(tensor_type t, const uint8_t* src, float* dst, int k) {
  switch (t) {
    case tensor_type::f32: std::memcpy(dst, src, size_t(k) * 4); return;
    case tensor_type::f16:
    case tensor_type::bf16:
      for (int i = 0; i < k; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = t == tensor_type::f16 ? fp16_to_f32(h) : bf16_to_f32(h);
      }
      return;
    case tensor_type::q8_0:
      for (int b = 0; b < k / qk; ++b) {
        block_q8_0 blk;
        std::memcpy(&blk, src + b * sizeof blk, sizeof blk);
        float d = fp16_to_f32(blk.d);
        for (int i = 0; i < qk; ++i) dst[b * qk + i] = d * blk.qs[i];
      }
      return;
    case tensor_type::q4_0:
    case tensor_type::q4_1:
      for (int b = 0; b < k / qk; ++b) {
        float d, m;
        const uint8_t* qs;
        if (t == tensor_type::q4_0) {
          auto* blk = reinterpret_cast<const block_q4_0*>(src) + b;
          d = fp16_to_f32(blk->d); m = -8.0f * d; qs = blk->qs;
        } else {
          auto* blk = reinterpret_cast<const block_q4_1*>(src) + b;
          d = fp16_to_f32(blk->d); m = fp16_to_f32(blk->m); qs = blk->qs;
        }
        for (int i = 0; i < qk / 2; ++i) {
          dst[b * qk + i] = float(qs[i] & 0xf) * d + m;
          dst[b * qk + i + qk / 2] = float(qs[i] >> 4) * d + m;
        }
      }
      return;
    case tensor_type::q5_0:
    case tensor_type::q5_1:
    case tensor_type::q4_k:
    case tensor_type::q5_k:
    case tensor_type::q6_k: dequantize_row_extra(t, src, dst, k); return;
  }
}

}  // namespace sluice::engine
