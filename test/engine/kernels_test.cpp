// SIMD kernels agree with the scalar reference (and through it with llama.cpp's block formats): matmul
// for every weight type over token tiles and row ranges, activation quantization, attention helpers.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernels.h"

using namespace sluice::engine;

namespace {

std::vector<uint8_t> random_weights(tensor_type t, int rows, int k, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  size_t rb = row_bytes_of(t, k);
  std::vector<uint8_t> w(rb * size_t(rows));
  for (int r = 0; r < rows; ++r) {
    uint8_t* row = w.data() + size_t(r) * rb;
    if (t == tensor_type::f32) {
      for (int i = 0; i < k; ++i) { float v = nd(rng); std::memcpy(row + 4 * i, &v, 4); }
    } else if (t == tensor_type::f16 || t == tensor_type::bf16) {
      for (int i = 0; i < k; ++i) {
        float v = nd(rng);
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        uint16_t h = t == tensor_type::f16 ? f32_to_fp16(v) : uint16_t(bits >> 16);
        std::memcpy(row + 2 * i, &h, 2);
      }
    } else {
      for (size_t i = 0; i < rb; ++i) row[i] = uint8_t(rng());
      size_t bb = t == tensor_type::q8_0 ? sizeof(block_q8_0) : t == tensor_type::q4_0 ? sizeof(block_q4_0) : sizeof(block_q4_1);
      for (int b = 0; b < k / qk; ++b) {  // sane fp16 scales
        uint16_t d = f32_to_fp16(0.01f + 0.001f * float(rng() % 100));
        std::memcpy(row + b * bb, &d, 2);
        if (t == tensor_type::q4_1) {
          uint16_t m = f32_to_fp16(-0.1f + 0.001f * float(rng() % 100));
          std::memcpy(row + b * bb + 2, &m, 2);
        }
      }
    }
  }
  return w;
}

}  // namespace

TEST_CASE("kernels: dequantize matches the block formats", "[kernels]") {
  block_q4_1 b{};
  b.d = f32_to_fp16(0.5f);
  b.m = f32_to_fp16(-1.0f);
  for (int i = 0; i < 16; ++i) b.qs[i] = uint8_t(i | ((15 - i) << 4));
  float out[32];
  dequantize_row(tensor_type::q4_1, reinterpret_cast<const uint8_t*>(&b), out, 32);
  CHECK(out[0] == -1.0f);
  CHECK(out[3] == 0.5f);
  CHECK(out[16] == 6.5f);  // 15 * 0.5 - 1
  block_q4_0 c{};
  c.d = f32_to_fp16(2.0f);
  c.qs[0] = 0x9;  // element 0 = (9 - 8) * 2, element 16 = (0 - 8) * 2
  dequantize_row(tensor_type::q4_0, reinterpret_cast<const uint8_t*>(&c), out, 32);
  CHECK(out[0] == 2.0f);
  CHECK(out[16] == -16.0f);
}

TEST_CASE("kernels: fp16 conversions round-trip", "[kernels]") {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1e-5f, 1e-7f, 3.14159f})
    CHECK(std::fabs(fp16_to_f32(f32_to_fp16(v)) - v) <= std::fabs(v) * 1e-3f + 1e-7f);
  CHECK(std::isinf(fp16_to_f32(f32_to_fp16(1e6f))));
  CHECK(f32_to_fp16(1.0f) == 0x3c00);
}

TEST_CASE("kernels: SIMD matmul equals the scalar reference for every type", "[kernels]") {
  std::vector<const kernel_table*> tables = {avx2_kernels(), vnni_kernels()};
  __builtin_cpu_init();
  bool have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  bool have_vnni = have_avx2 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int k = 96, rows = 13;
  for (tensor_type t : {tensor_type::f32, tensor_type::f16, tensor_type::bf16, tensor_type::q8_0, tensor_type::q4_0,
                        tensor_type::q4_1}) {
    auto w = random_weights(t, rows, k, rng);
    for (int nt : {1, 2, 3, 5, 9}) {
      std::vector<float> x(size_t(nt) * k);
      for (auto& v : x) v = nd(rng);
      std::vector<block_q8_act> xq(size_t(nt) * (k / qk));
      for (int i = 0; i < nt; ++i) scalar_kernels().quantize_q8(x.data() + i * k, xq.data() + i * (k / qk), k);
      matmul_args a;
      a.type = t; a.w = w.data(); a.row_bytes = row_bytes_of(t, k); a.k = k;
      a.r0 = 1; a.r1 = rows; a.nt = nt; a.xf = x.data(); a.ldxf = k; a.xq = xq.data(); a.ldxq = k / qk; a.ldy = rows;
      std::vector<float> ref(size_t(nt) * rows, 0.5f);
      a.y = ref.data();
      a.accumulate = true;
      scalar_kernels().matmul(a);
      for (size_t ti = 0; ti < tables.size(); ++ti) {
        if (!tables[ti] || (ti == 0 && !have_avx2) || (ti == 1 && !have_vnni)) continue;
        std::vector<float> got(size_t(nt) * rows, 0.5f);
        a.y = got.data();
        tables[ti]->matmul(a);
        for (size_t i = 0; i < got.size(); ++i) {
          INFO(tables[ti]->name << " type " << int(t) << " nt " << nt << " i " << i);
          CHECK(got[i] == Approx(ref[i]).epsilon(1e-4).margin(1e-4));
        }
        CHECK(got[0] == 0.5f);  // row 0 is outside [r0, r1): untouched
      }
    }
  }
}

TEST_CASE("kernels: SIMD activation quantization and attention helpers equal scalar", "[kernels]") {
  const kernel_table* simd = &cpu_kernels();
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> x(128);
  for (auto& v : x) v = nd(rng);
  x[5] = 0.0f;
  std::vector<float> zeros(32, 0.0f);
  std::vector<block_q8_act> a(4), b(4), z(1);
  scalar_kernels().quantize_q8(x.data(), a.data(), 128);
  simd->quantize_q8(x.data(), b.data(), 128);
  for (int i = 0; i < 4; ++i) {
    CHECK(a[i].d == b[i].d);
    CHECK(a[i].s == b[i].s);
    CHECK(std::memcmp(a[i].qs, b[i].qs, 32) == 0);
  }
  simd->quantize_q8(zeros.data(), z.data(), 32);
  CHECK(z[0].d == 0.0f);
  std::vector<uint16_t> h(70);
  for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_fp16(nd(rng));
  CHECK(simd->dot_f16(x.data(), h.data(), 70) == Approx(scalar_kernels().dot_f16(x.data(), h.data(), 70)).epsilon(1e-5));
  CHECK(simd->dot_f32(x.data(), x.data() + 50, 70) ==
        Approx(scalar_kernels().dot_f32(x.data(), x.data() + 50, 70)).epsilon(1e-5));
  std::vector<float> y1(70, 1.0f), y2(70, 1.0f);
  simd->axpy_f16(0.3f, h.data(), y1.data(), 70);
  scalar_kernels().axpy_f16(0.3f, h.data(), y2.data(), 70);
  for (int i = 0; i < 70; ++i) CHECK(y1[size_t(i)] == Approx(y2[size_t(i)]).epsilon(1e-5).margin(1e-6));
}

TEST_CASE("kernels: attention score and mix kernels equal the scalar ones", "[kernels]") {
  const kernel_table* simd = &cpu_kernels();
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int hd : {64, 48, 128}) {
    const int n = 37;
    const size_t stride = size_t(hd) * 3;
    std::vector<uint16_t> kv(stride * n);
    for (auto& h : kv) h = f32_to_fp16(nd(rng));
    const size_t hds = static_cast<size_t>(hd);
    std::vector<float> q(hds), p(n), s1(n), s2(n), o1(hds), o2(hds);
    for (auto& v : q) v = nd(rng);
    for (auto& v : p) v = std::fabs(nd(rng));
    simd->attn_scores_f16(q.data(), kv.data() + hd, stride, n, hd, s1.data());
    scalar_kernels().attn_scores_f16(q.data(), kv.data() + hd, stride, n, hd, s2.data());
    for (int j = 0; j < n; ++j) CHECK(s1[size_t(j)] == Approx(s2[size_t(j)]).epsilon(1e-4).margin(1e-4));
    simd->attn_mix_f16(p.data(), kv.data() + hd, stride, n, hd, o1.data());
    scalar_kernels().attn_mix_f16(p.data(), kv.data() + hd, stride, n, hd, o2.data());
    for (int i = 0; i < hd; ++i) CHECK(o1[size_t(i)] == Approx(o2[size_t(i)]).epsilon(1e-4).margin(1e-4));
    // Paged KV mixes block by block into the same output: the bits must equal one call over all rows.
    std::vector<float> o3(hds, 0.0f);
    simd->attn_mix_f16(p.data(), kv.data() + hd, stride, 16, hd, o3.data());
    simd->attn_mix_f16(p.data() + 16, kv.data() + hd + 16 * stride, stride, n - 16, hd, o3.data());
    CHECK(o3 == o1);
  }
  std::vector<float> r1 = {0.1f, 1.0f / 3.0f, 1e-8f, 70000.0f, -2.5f, 3.14159f, 0.0f, 1e5f, 0.2f};
  std::vector<float> r2 = r1;
  simd->round_f16(r1.data(), int(r1.size()));
  scalar_kernels().round_f16(r2.data(), int(r2.size()));
  CHECK(r1 == r2);
}

TEST_CASE("kernels: SwiGLU activation matches the scalar one", "[kernels]") {
  std::vector<float> g1, u;
  for (int i = 0; i < 203; ++i) {
    g1.push_back(-100.0f + float(i));
    u.push_back(0.5f + 0.01f * float(i));
  }
  g1[3] = 1e-3f;
  std::vector<float> g2 = g1;
  cpu_kernels().silu_mul(g1.data(), u.data(), int(g1.size()));
  scalar_kernels().silu_mul(g2.data(), u.data(), int(g2.size()));
  for (size_t i = 0; i < g1.size(); ++i) {
    INFO(i);
    CHECK(g1[i] == Approx(g2[i]).epsilon(1e-6).margin(1e-30));
  }
}
