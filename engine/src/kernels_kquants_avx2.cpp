// AVX2 dot products for Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights against Q8 activations: the
// same arithmetic as kernels_kquants.cpp, 32 weights per instruction group, float sums in another order.
// Compiled with -mavx2 -mfma -mf16c (CMake: *_avx2.cpp) and called only where the CPU has them.
#include <immintrin.h>

#include <cstring>

#include "kernels.h"

namespace sluice::engine {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float half(uint16_t h) { return _cvtsh_ss(h); }

// 8 int32 partial sums of u[i] * s[i] (u unsigned 0..127, s signed), pairs of neighbours summed.
inline __m256i dot_u8_s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 32 bytes, 0xFF where bit i of `bits` is set: byte i gets byte i / 8 of `bits`, then is tested against 1 << (i % 8).
inline __m256i bytes_from_bits(uint32_t bits) {
  const __m256i which_byte = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), which_byte);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

// Q4_K and Q5_K (five: the fifth bit of element 64c + l is bit 2c of qh[l], of 64c + 32 + l bit 2c + 1).
template <bool five>
float dot_q45_k(const uint8_t* w, const block_q8_act* x, int nsb) {
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit5 = _mm256_set1_epi8(0x10);
  for (int sb = 0; sb < nsb; ++sb) {
    const uint8_t *scales, *qs, *qhp = nullptr;
    uint16_t dh, mh;
    if constexpr (five) {
      const block_q5_k& blk = reinterpret_cast<const block_q5_k*>(w)[sb];
      scales = blk.scales, qs = blk.qs, qhp = blk.qh, dh = blk.d, mh = blk.dmin;
    } else {
      const block_q4_k& blk = reinterpret_cast<const block_q4_k*>(w)[sb];
      scales = blk.scales, qs = blk.qs, dh = blk.d, mh = blk.dmin;
    }
    const float d = half(dh), dmin = half(mh);
    const block_q8_act* a = x + 8 * sb;
    __m256i qh = five ? load32(qhp) : _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i bytes = load32(qs + 32 * c);
      __m256i lo = _mm256_and_si256(bytes, low4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4);
      if constexpr (five) {  // bit 2c of qh -> bit 4 of lo, bit 2c + 1 -> bit 4 of hi; then shift qh down by 2
        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit5));
        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit5));
        qh = _mm256_srli_epi16(qh, 2);
      }
      uint8_t sc0, m0, sc1, m1;
      k_scale_min(2 * c, scales, sc0, m0);
      k_scale_min(2 * c + 1, scales, sc1, m1);
      const block_q8_act& a0 = a[2 * c];
      const block_q8_act& a1 = a[2 * c + 1];
      acc = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc0) * a0.d), _mm256_cvtepi32_ps(dot_u8_s8(lo, load32(a0.qs))), acc);
      acc = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc1) * a1.d), _mm256_cvtepi32_ps(dot_u8_s8(hi, load32(a1.qs))), acc);
      mins += dmin * (float(m0) * a0.s + float(m1) * a1.s);
    }
  }
  return hsum(acc) - mins;
}

float dot_q6_k(const uint8_t* w, const block_q8_act* x, int nsb) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(0x03), offset = _mm256_set1_epi8(32);
  for (int sb = 0; sb < nsb; ++sb) {
    const block_q6_k& blk = reinterpret_cast<const block_q6_k*>(w)[sb];
    const float d = half(blk.d);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load32(blk.ql + 64 * h), ql1 = load32(blk.ql + 64 * h + 32);
      const __m256i qh = load32(blk.qh + 32 * h);
      const int8_t* sc = blk.scales + 8 * h;
      for (int p = 0; p < 4; ++p) {
        const __m256i lo_src = p % 2 == 0 ? ql0 : ql1;
        const __m256i lo = p / 2 == 0 ? _mm256_and_si256(lo_src, low4)
                                      : _mm256_and_si256(_mm256_srli_epi16(lo_src, 4), low4);
        __m256i hi;
        switch (p) {  // (shift counts must be constants)
          case 0: hi = qh; break;
          case 1: hi = _mm256_srli_epi16(qh, 2); break;
          case 2: hi = _mm256_srli_epi16(qh, 4); break;
          default: hi = _mm256_srli_epi16(qh, 6); break;
        }
        hi = _mm256_slli_epi16(_mm256_and_si256(hi, two), 4);
        const __m256i q = _mm256_or_si256(lo, hi);  // 0..63
        const block_q8_act& a = x[8 * sb + 4 * h + p];
        const __m256i av = load32(a.qs);
        const __m256i s = _mm256_sub_epi32(dot_u8_s8(q, av), dot_u8_s8(offset, av));  // lanes 0-3: elements 0..15
        const float base = d * a.d;
        const __m256 scale = _mm256_set_m128(_mm_set1_ps(base * float(sc[2 * p + 1])), _mm_set1_ps(base * float(sc[2 * p])));
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(s), acc);
      }
    }
  }
  return hsum(acc);
}

}  // namespace

// Q5_0 / Q5_1 rows against N tokens at once: each weight block is unpacked once for all N (prefill: 4; decode
// and the rest: 1). Block fields are read in place: a copy of the block to the stack first would stall the
// vector load on store forwarding.
template <bool one, int N>
void rows_q5_tokens(const matmul_args& m, int r, int t0) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), bit5 = _mm256_set1_epi8(0x10), sixteen = _mm256_set1_epi8(16);
  const uint8_t* row = m.w + size_t(r) * m.row_bytes;
  const size_t block_bytes = one ? sizeof(block_q5_1) : sizeof(block_q5_0);
  __m256 acc[N];
  float mins[N];
  for (int j = 0; j < N; ++j) acc[j] = _mm256_setzero_ps(), mins[j] = 0.0f;
  for (int b = 0; b < m.k / qk; ++b) {
    const uint8_t* blk = row + size_t(b) * block_bytes;
    uint16_t dh, mh = 0;
    uint32_t qh;
    std::memcpy(&dh, blk, 2);
    if (one) std::memcpy(&mh, blk + 2, 2);
    std::memcpy(&qh, blk + (one ? 4 : 2), 4);
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + (one ? 8 : 6)));
    __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), low4);
    q = _mm256_or_si256(q, _mm256_and_si256(bytes_from_bits(qh), bit5));
    const float d = half(dh), mf = half(mh);
    for (int j = 0; j < N; ++j) {
      const block_q8_act& a = m.xq[size_t(t0 + j) * m.ldxq + b];
      const __m256i av = load32(a.qs);
      __m256i s = dot_u8_s8(q, av);
      if (!one) s = _mm256_sub_epi32(s, dot_u8_s8(sixteen, av));
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d * a.d), _mm256_cvtepi32_ps(s), acc[j]);
      if (one) mins[j] += mf * a.s;
    }
  }
  for (int j = 0; j < N; ++j) {
    const float v = hsum(acc[j]) + mins[j];
    float& out = m.y[size_t(t0 + j) * m.ldy + r];
    out = m.accumulate ? out + v : v;
  }
}

template <bool one>
void matmul_q5(const matmul_args& m) {
  for (int r = m.r0; r < m.r1; ++r) {
    int t = 0;
    for (; t + 4 <= m.nt; t += 4) rows_q5_tokens<one, 4>(m, r, t);
    for (; t < m.nt; ++t) rows_q5_tokens<one, 1>(m, r, t);
  }
}

// The AVX2 version of matmul_extra for the types it has; the others go to the portable code.
void matmul_extra_avx2(const matmul_args& m) {
  if (m.type == tensor_type::q5_0) return matmul_q5<false>(m);
  if (m.type == tensor_type::q5_1) return matmul_q5<true>(m);
  float (*dot)(const uint8_t*, const block_q8_act*, int) = nullptr;
  int n = 0;
  switch (m.type) {
    case tensor_type::q4_k: dot = dot_q45_k<false>, n = m.k / qk_k; break;
    case tensor_type::q5_k: dot = dot_q45_k<true>, n = m.k / qk_k; break;
    case tensor_type::q6_k: dot = dot_q6_k, n = m.k / qk_k; break;
    default: return matmul_extra(m);
  }
  for (int r = m.r0; r < m.r1; ++r) {  // row-major: a row stays in L1 while every token of a chunk reads it
    const uint8_t* row = m.w + size_t(r) * m.row_bytes;
    for (int t = 0; t < m.nt; ++t) {
      const float v = dot(row, m.xq + size_t(t) * m.ldxq, n);
      float& out = m.y[size_t(t) * m.ldy + r];
      out = m.accumulate ? out + v : v;
    }
  }
}

}  // namespace sluice::engine
