// The ggml tensor element types the engine reads (ids as stored in GGUF), their block layouts, and
// conversions between half/bfloat16 and float. What must not go in here: kernels (see kernels.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace sluice::engine {

enum class tensor_type : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  bf16 = 30,
};

struct type_traits {
  const char* name;
  uint32_t block_elems;  // elements per block
  uint32_t block_bytes;  // bytes per block
};

// Known-and-supported types only; std::nullopt for anything else.
std::optional<type_traits> traits_of(uint32_t raw_type);
// The ggml name of any type id ("Q4_K", ...), or "type <id>" when it is not a known ggml type.
std::string ggml_type_name(uint32_t raw_type);

constexpr int qk = 32;     // elements per quantization block of the 32-element types (and of activations)
constexpr int qk_k = 256;  // elements per super-block of the K-quants

struct block_q4_0 {  // x[i] = (nibble - 8) * d; low nibbles hold elements 0..15, high nibbles 16..31
  uint16_t d;        // fp16
  uint8_t qs[qk / 2];
};
struct block_q4_1 {  // x[i] = nibble * d + m
  uint16_t d, m;     // fp16
  uint8_t qs[qk / 2];
};
struct block_q8_0 {  // x[i] = q[i] * d
  uint16_t d;        // fp16
  int8_t qs[qk];
};
static_assert(sizeof(block_q4_0) == 18 && sizeof(block_q4_1) == 20 && sizeof(block_q8_0) == 34);
// 5-bit: the low 4 bits as in Q4, the fifth bit of element i in bit i of qh (little-endian 32 bits).
struct block_q5_0 {  // x[i] = (q - 16) * d
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[qk / 2];
};
struct block_q5_1 {  // x[i] = q * d + m
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[qk / 2];
};
// K-quants: 256 elements in 8 sub-blocks of 32 (Q4_K, Q5_K: a 6-bit scale and min each, packed in 12 bytes,
// times the super-block's d and dmin) or 16 sub-blocks of 16 (Q6_K: an int8 scale each, times d). Within each
// 64 elements, 32 bytes of qs hold the first 32 in their low nibbles and the next 32 in their high nibbles.
struct block_q4_k {  // x = d * sc * q - dmin * m
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[qk_k / 2];
};
struct block_q5_k {  // as Q4_K, with the fifth bit of element 64c + l in bit 2c of qh[l] (of 64c + 32 + l: 2c + 1)
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[qk_k / 8];
  uint8_t qs[qk_k / 2];
};
struct block_q6_k {  // x = d * scales[i / 16] * (q - 32); low 4 bits in ql, high 2 bits in qh
  uint8_t ql[qk_k / 2];
  uint8_t qh[qk_k / 4];
  int8_t scales[qk_k / 16];
  uint16_t d;
};
static_assert(sizeof(block_q5_0) == 22 && sizeof(block_q5_1) == 24 && sizeof(block_q4_k) == 144 &&
              sizeof(block_q5_k) == 176 && sizeof(block_q6_k) == 210);

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block.
inline void k_scale_min(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Activations quantized for integer dot products: one per 32 floats. `s` = d * sum(qs), used by Q4_1 (its
// `m` term) and Q4_0 (its -8 offset).
struct block_q8_act {
  float d;
  float s;
  int8_t qs[qk];
};
static_assert(sizeof(block_q8_act) == 40);

inline float fp16_to_f32(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { ++e; mant <<= 1; } while ((mant & 0x400u) == 0);
      bits = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t f32_to_fp16(float f) {  // round to nearest even
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // overflow -> inf
  if (absx < 0x38800000u) {                                  // subnormal or zero in half
    if (absx < 0x33000000u) return uint16_t(sign);
    uint32_t e = absx >> 23, m = (absx & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;  // 14..24
    uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return uint16_t(sign | half);
  }
  uint32_t r = absx + 0xfffu + ((absx >> 13) & 1u);
  return uint16_t(sign | ((r - 0x38000000u) >> 13));
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace sluice::engine
