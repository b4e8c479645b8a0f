// Q4_1 and Q8_0 matmul over weights packed 8 rows at a time (weight_packing.h), on 512-bit registers with
// AVX512-VNNI. One load brings the same block of 4 (Q4_1) or 2 (Q8_0) rows, one conversion the fp16 scales
// of 8 rows, so a decode step spends about a third of the instructions per weight byte that the row-by-row
// tiles of kernels_x86.inc do. Every row keeps the 8 int32 lane sums per block, the per-lane FMA chain over
// blocks and ggml's horizontal-sum order of those tiles: the results are bit-identical to theirs.
// Compiled with the AVX2 flags plus the target pragma below; reached only through the VNNI kernel table.
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_ps() as the unused merge source of unmasked
// operations, which -W(maybe-)uninitialized reports inside its own headers once inlined: a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <algorithm>

#include "kernels.h"
#include "weight_packing.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")
#endif

namespace sluice::engine {
namespace {

// Decode streams the packed weights once per token: fetch this far ahead in the quants (and as far in
// blocks in the scales). 4 KB measured better than 1 or 2 KB over a whole model's matrices (one thread).
constexpr int prefetch_bytes = 4096;

// 4 rows, one per 128-bit lane, each lane holding [s0 s1 s2 s3] = (lane l + lane l + 4) of the row's 8
// accumulator lanes -> (s0 + s2) + (s1 + s3) per row: the order of kernels_x86.inc's hsum8.
inline __m128 hsum_rows4(__m512 s) {
  const __m512 t = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), u));
}

// Two rows per register (one per 256-bit half, 8 lanes each) for rows (a: 0, 1) and (b: 2, 3) -> 4 sums.
inline __m128 hsum_rows2x2(__m512 a, __m512 b) {
  const __m512 lo = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // lanes 0..3 of rows 0, 1, 2, 3
  const __m512 hi = _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1));  // lanes 4..7
  return hsum_rows4(_mm512_add_ps(lo, hi));
}

inline void store8(float* y, __m256 v, bool accumulate) {
  if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y), v);
  _mm256_storeu_ps(y, v);
}

inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// Group g (rows 8g..8g+7) x tokens [t, t + T): out[j * ldo + i] (+)= row 8g + i . token t + j.
template <int T>
void group_q4_1(const matmul_args& m, int g, int t, float* out, size_t ldo, bool accumulate) {
  const int nb = m.k / qk, groups = m.packed_rows / pack_group_rows;
  const uint8_t* q = m.w + size_t(g) * size_t(nb) * 128;
  const uint8_t* s = m.w + size_t(groups) * size_t(nb) * 128 + size_t(g) * size_t(nb) * 32;
  const block_q8_act* x[T];
  for (int j = 0; j < T; ++j) x[j] = m.xq + size_t(t + j) * m.ldxq;
  // acc[j][0], [1]: rows 0..3, lanes 0..3 (low nibbles) and 4..7 (high nibbles); [2], [3]: rows 4..7.
  __m512 acc[T][4];
  __m256 summ[T];  // m * s of rows 0..7
  for (int j = 0; j < T; ++j) {
    for (auto& a : acc[j]) a = _mm512_setzero_ps();
    summ[j] = _mm256_setzero_ps();
  }
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  const __m512i rows03 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i rows47 = _mm512_add_epi32(rows03, _mm512_set1_epi32(4));
  for (int b = 0; b < nb; ++b, q += 128, s += 32) {
    if (T == 1) {
      _mm_prefetch(reinterpret_cast<const char*>(q) + prefetch_bytes, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(q) + prefetch_bytes + 64, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s) + prefetch_bytes / 4, _MM_HINT_T0);
    }
    const __m512i w03 = _mm512_loadu_si512(q), w47 = _mm512_loadu_si512(q + 64);
    const __m512i lo03 = _mm512_and_si512(w03, low4), hi03 = _mm512_and_si512(_mm512_srli_epi16(w03, 4), low4);
    const __m512i lo47 = _mm512_and_si512(w47, low4), hi47 = _mm512_and_si512(_mm512_srli_epi16(w47, 4), low4);
    const __m256 d8 = _mm256_cvtph_ps(load16(s)), m8 = _mm256_cvtph_ps(load16(s + 16));
    for (int j = 0; j < T; ++j) {
      const block_q8_act& a = x[j][b];
      const __m512i ylo = _mm512_broadcast_i32x4(load16(a.qs)), yhi = _mm512_broadcast_i32x4(load16(a.qs + 16));
      const __m512 ds = _mm512_castps256_ps512(_mm256_mul_ps(d8, _mm256_set1_ps(a.d)));
      const __m512 sc03 = _mm512_permutexvar_ps(rows03, ds), sc47 = _mm512_permutexvar_ps(rows47, ds);
      const __m512i z = _mm512_setzero_si512();
      acc[j][0] = _mm512_fmadd_ps(sc03, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, lo03, ylo)), acc[j][0]);
      acc[j][1] = _mm512_fmadd_ps(sc03, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, hi03, yhi)), acc[j][1]);
      acc[j][2] = _mm512_fmadd_ps(sc47, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, lo47, ylo)), acc[j][2]);
      acc[j][3] = _mm512_fmadd_ps(sc47, _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, hi47, yhi)), acc[j][3]);
      summ[j] = _mm256_add_ps(summ[j], _mm256_mul_ps(m8, _mm256_set1_ps(a.s)));
    }
  }
  for (int j = 0; j < T; ++j) {
    const __m128 r03 = hsum_rows4(_mm512_add_ps(acc[j][0], acc[j][1]));
    const __m128 r47 = hsum_rows4(_mm512_add_ps(acc[j][2], acc[j][3]));
    store8(out + size_t(j) * ldo, _mm256_add_ps(_mm256_set_m128(r47, r03), summ[j]), accumulate);
  }
}

template <int T>
void group_q8_0(const matmul_args& m, int g, int t, float* out, size_t ldo, bool accumulate) {
  const int nb = m.k / qk, groups = m.packed_rows / pack_group_rows;
  const uint8_t* q = m.w + size_t(g) * size_t(nb) * 256;
  const uint8_t* s = m.w + size_t(groups) * size_t(nb) * 256 + size_t(g) * size_t(nb) * 16;
  const block_q8_act* x[T];
  for (int j = 0; j < T; ++j) x[j] = m.xq + size_t(t + j) * m.ldxq;
  __m512 acc[T][4];  // rows (0, 1), (2, 3), (4, 5), (6, 7): one row per 256-bit half
  for (int j = 0; j < T; ++j)
    for (auto& a : acc[j]) a = _mm512_setzero_ps();
  const __m512i bias = _mm512_set1_epi8(char(0x80));
  __m512i rows[4];
  for (int p = 0; p < 4; ++p)
    rows[p] = _mm512_setr_epi32(2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1);
  for (int b = 0; b < nb; ++b, q += 256, s += 16) {
    if (T == 1) {
      for (int c = 0; c < 4; ++c) _mm_prefetch(reinterpret_cast<const char*>(q) + prefetch_bytes + 64 * c, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s) + prefetch_bytes / 16, _MM_HINT_T0);
    }
    __m512i w[4];
    for (int p = 0; p < 4; ++p) w[p] = _mm512_loadu_si512(q + 64 * p);  // stored as q + 128 (unsigned)
    const __m256 d8 = _mm256_cvtph_ps(load16(s));
    for (int j = 0; j < T; ++j) {
      const block_q8_act& a = x[j][b];
      const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs)));
      // (q + 128) . y - 128 sum(y) == q . y exactly, lane by lane: start each sum at -128 sum(y).
      const __m512i neg = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, y));
      const __m512 ds = _mm512_castps256_ps512(_mm256_mul_ps(d8, _mm256_set1_ps(a.d)));
      for (int p = 0; p < 4; ++p)
        acc[j][p] = _mm512_fmadd_ps(_mm512_permutexvar_ps(rows[p], ds),
                                    _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(neg, w[p], y)), acc[j][p]);
    }
  }
  for (int j = 0; j < T; ++j)
    store8(out + size_t(j) * ldo,
           _mm256_set_m128(hsum_rows2x2(acc[j][2], acc[j][3]), hsum_rows2x2(acc[j][0], acc[j][1])), accumulate);
}

template <int T>
void group(const matmul_args& m, int g, int t, float* out, size_t ldo, bool accumulate) {
  if (m.type == tensor_type::q4_1) group_q4_1<T>(m, g, t, out, ldo, accumulate);
  else group_q8_0<T>(m, g, t, out, ldo, accumulate);
}

// Tokens [t, t + T) of group g; rows outside [r0, r1) are computed into a scratch tile and dropped.
template <int T>
void group_tokens(const matmul_args& m, int g, int t, int r0, int r1) {
  const int g0 = g * pack_group_rows;
  if (g0 >= r0 && g0 + pack_group_rows <= r1) {
    group<T>(m, g, t, m.y + size_t(t) * m.ldy + g0, size_t(m.ldy), m.accumulate);
    return;
  }
  float tmp[T * pack_group_rows];
  group<T>(m, g, t, tmp, pack_group_rows, false);
  for (int j = 0; j < T; ++j)
    for (int r = std::max(r0, g0); r < std::min(r1, g0 + pack_group_rows); ++r) {
      float& y = m.y[size_t(t + j) * m.ldy + r];
      const float v = tmp[j * pack_group_rows + (r - g0)];
      y = m.accumulate ? y + v : v;
    }
}

}  // namespace

void matmul_packed_vnni(const matmul_args& m) {
  const int r1 = std::min(m.r1, m.packed_rows);
  for (int g = m.r0 / pack_group_rows; g * pack_group_rows < r1; ++g) {
    int t = 0;
    for (; t + 4 <= m.nt; t += 4) group_tokens<4>(m, g, t, m.r0, r1);
    switch (m.nt - t) {
      case 3: group_tokens<3>(m, g, t, m.r0, r1); break;
      case 2: group_tokens<2>(m, g, t, m.r0, r1); break;
      case 1: group_tokens<1>(m, g, t, m.r0, r1); break;
      default: break;
    }
  }
}

}  // namespace sluice::engine

#if defined(__clang__)
#pragma clang attribute pop
#endif
