// Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weights (the types llama.cpp's Q4_K_M / Q5_K_M / Q6_K files are made of):
// dequantization that follows ggml's reference arithmetic operation for operation (so a dequantized row equals
// llama.cpp's bit for bit), and dot products against the engine's Q8 activations (one scale per 32 values and
// its sum, `s`, which carries the K-quants' min terms and Q5_0's offset). Portable C++, shared by every kernel
// table; what must not go in here: threading, model structure.
#include <cstring>

#include "kernels.h"

namespace sluice::engine {

namespace {

template <class Block>
const Block* blocks(const uint8_t* w) {
  return reinterpret_cast<const Block*>(w);
}

uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, 4);
  return v;
}

// The 32 five-bit values of a Q5_0/Q5_1 block, in element order.
void unpack_q5(const uint8_t* qs, uint32_t qh, int* q) {
  for (int j = 0; j < qk / 2; ++j) {
    q[j] = int((qs[j] & 0x0F) | (((qh >> j) & 1u) << 4));
    q[j + qk / 2] = int((qs[j] >> 4) | (((qh >> (j + qk / 2)) & 1u) << 4));
  }
}

int dot32(const int* q, const int8_t* a) {
  int s = 0;
  for (int i = 0; i < qk; ++i) s += q[i] * int(a[i]);
  return s;
}

float dot_q5_0(const uint8_t* w, const block_q8_act* x, int nb) {
  float acc = 0.0f;
  int q[qk];
  for (int b = 0; b < nb; ++b) {
    const block_q5_0& blk = blocks<block_q5_0>(w)[b];
    unpack_q5(blk.qs, load_qh(blk.qh), q);
    for (int& v : q) v -= 16;
    acc += fp16_to_f32(blk.d) * x[b].d * float(dot32(q, x[b].qs));
  }
  return acc;
}

float dot_q5_1(const uint8_t* w, const block_q8_act* x, int nb) {
  float acc = 0.0f;
  int q[qk];
  for (int b = 0; b < nb; ++b) {
    const block_q5_1& blk = blocks<block_q5_1>(w)[b];
    unpack_q5(blk.qs, load_qh(blk.qh), q);
    acc += fp16_to_f32(blk.d) * x[b].d * float(dot32(q, x[b].qs)) + fp16_to_f32(blk.m) * x[b].s;
  }
  return acc;
}

// Q4_K and Q5_K: sub-block j of a super-block is activation block 8 * sb + j.
template <bool five>
float dot_q45_k(const uint8_t* w, const block_q8_act* x, int nsb) {
  float acc = 0.0f;
  int q[qk];
  for (int sb = 0; sb < nsb; ++sb) {
    const uint8_t *scales, *qs, *qh = nullptr;
    uint16_t dh, mh;
    if constexpr (five) {
      const block_q5_k& blk = blocks<block_q5_k>(w)[sb];
      scales = blk.scales, qs = blk.qs, qh = blk.qh, dh = blk.d, mh = blk.dmin;
    } else {
      const block_q4_k& blk = blocks<block_q4_k>(w)[sb];
      scales = blk.scales, qs = blk.qs, dh = blk.d, mh = blk.dmin;
    }
    const float d = fp16_to_f32(dh), dmin = fp16_to_f32(mh);
    float sum_q = 0.0f, sum_m = 0.0f;
    for (int j = 0; j < 8; ++j) {
      const uint8_t* bytes = qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      for (int l = 0; l < qk; ++l) {
        int v = (bytes[l] >> shift) & 0x0F;
        if constexpr (five) v |= ((qh[l] >> j) & 1) << 4;
        q[l] = v;
      }
      uint8_t sc, m;
      k_scale_min(j, scales, sc, m);
      const block_q8_act& a = x[8 * sb + j];
      sum_q += float(sc) * a.d * float(dot32(q, a.qs));
      sum_m += float(m) * a.s;
    }
    acc += d * sum_q - dmin * sum_m;
  }
  return acc;
}

// Q6_K: activation block 8 * sb + 4 * half + part covers elements 128 * half + 32 * part + [0, 32), whose two
// halves of 16 have scales scales[8 * half + 2 * part] and [... + 1].
float dot_q6_k(const uint8_t* w, const block_q8_act* x, int nsb) {
  float acc = 0.0f;
  for (int sb = 0; sb < nsb; ++sb) {
    const block_q6_k& blk = blocks<block_q6_k>(w)[sb];
    float sum = 0.0f;
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = blk.ql + 64 * half;
      const uint8_t* qh = blk.qh + 32 * half;
      const int8_t* sc = blk.scales + 8 * half;
      for (int part = 0; part < 4; ++part) {
        const uint8_t* lo = ql + (part % 2) * 32;
        const int nibble_shift = (part / 2) * 4, high_shift = part * 2;
        const block_q8_act& a = x[8 * sb + 4 * half + part];
        int s[2] = {0, 0};
        for (int l = 0; l < qk; ++l) {
          const int v = int(((lo[l] >> nibble_shift) & 0x0F) | (((qh[l] >> high_shift) & 3) << 4)) - 32;
          s[l / 16] += v * int(a.qs[l]);
        }
        sum += a.d * float(int(sc[2 * part]) * s[0] + int(sc[2 * part + 1]) * s[1]);
      }
    }
    acc += fp16_to_f32(blk.d) * sum;
  }
  return acc;
}

}  // namespace

float dot_row_extra(tensor_type t, const uint8_t* w, const block_q8_act* x, int k) {
  switch (t) {
    case tensor_type::q5_0: return dot_q5_0(w, x, k / qk);
    case tensor_type::q5_1: return dot_q5_1(w, x, k / qk);
    case tensor_type::q4_k: return dot_q45_k<false>(w, x, k / qk_k);
    case tensor_type::q5_k: return dot_q45_k<true>(w, x, k / qk_k);
    case tensor_type::q6_k: return dot_q6_k(w, x, k / qk_k);
    default: return 0.0f;
  }
}

void matmul_extra(const matmul_args& m) {
  for (int r = m.r0; r < m.r1; ++r) {  // row-major: a row stays in cache while every token of a chunk reads it
    for (int t = 0; t < m.nt; ++t) {
      const float v = dot_row_extra(m.type, m.w + size_t(r) * m.row_bytes, m.xq + size_t(t) * m.ldxq, m.k);
      float& out = m.y[size_t(t) * m.ldy + r];
      out = m.accumulate ? out + v : v;
    }
  }
}

// ggml's reference dequantization, in its order of operations.
void dequantize_row_extra(tensor_type t, const uint8_t* src, float* y, int k) {
  switch (t) {
    case tensor_type::q5_0:
    case tensor_type::q5_1: {
      int q[qk];
      for (int b = 0; b < k / qk; ++b) {
        if (t == tensor_type::q5_0) {
          const block_q5_0& blk = blocks<block_q5_0>(src)[b];
          unpack_q5(blk.qs, load_qh(blk.qh), q);
          const float d = fp16_to_f32(blk.d);
          for (int i = 0; i < qk; ++i) y[b * qk + i] = float(q[i] - 16) * d;
        } else {
          const block_q5_1& blk = blocks<block_q5_1>(src)[b];
          unpack_q5(blk.qs, load_qh(blk.qh), q);
          const float d = fp16_to_f32(blk.d), m = fp16_to_f32(blk.m);
          for (int i = 0; i < qk; ++i) y[b * qk + i] = float(q[i]) * d + m;
        }
      }
      return;
    }
    case tensor_type::q4_k:
    case tensor_type::q5_k:
      for (int sb = 0; sb < k / qk_k; ++sb) {
        const uint8_t *scales, *qs, *qh = nullptr;
        uint16_t dh, mh;
        if (t == tensor_type::q5_k) {
          const block_q5_k& blk = blocks<block_q5_k>(src)[sb];
          scales = blk.scales, qs = blk.qs, qh = blk.qh, dh = blk.d, mh = blk.dmin;
        } else {
          const block_q4_k& blk = blocks<block_q4_k>(src)[sb];
          scales = blk.scales, qs = blk.qs, dh = blk.d, mh = blk.dmin;
        }
        const float d = fp16_to_f32(dh), min = fp16_to_f32(mh);
        float* out = y + size_t(sb) * qk_k;
        for (int j = 0; j < 8; ++j) {
          uint8_t sc, m;
          k_scale_min(j, scales, sc, m);
          const float d1 = d * float(sc), m1 = min * float(m);
          const uint8_t* bytes = qs + 32 * (j / 2);
          const int shift = (j % 2) * 4;
          for (int l = 0; l < qk; ++l) {
            int v = (bytes[l] >> shift) & 0x0F;
            if (qh) v += ((qh[l] >> j) & 1) ? 16 : 0;
            out[32 * j + l] = d1 * float(v) - m1;
          }
        }
      }
      return;
    case tensor_type::q6_k:
      for (int sb = 0; sb < k / qk_k; ++sb) {
        const block_q6_k& blk = blocks<block_q6_k>(src)[sb];
        const float d = fp16_to_f32(blk.d);
        float* out = y + size_t(sb) * qk_k;
        for (int half = 0; half < 2; ++half) {
          const uint8_t* ql = blk.ql + 64 * half;
          const uint8_t* qh = blk.qh + 32 * half;
          const int8_t* sc = blk.scales + 8 * half;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = int((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = int((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            out[128 * half + l] = d * float(sc[is + 0]) * float(q1);
            out[128 * half + l + 32] = d * float(sc[is + 2]) * float(q2);
            out[128 * half + l + 64] = d * float(sc[is + 4]) * float(q3);
            out[128 * half + l + 96] = d * float(sc[is + 6]) * float(q4);
          }
        }
      }
      return;
    default:
      return;
  }
}

}  // namespace sluice::engine
