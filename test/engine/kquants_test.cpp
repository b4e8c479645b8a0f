// Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: dequantization of hand-built blocks (each bit field where ggml's layout puts
// it), dot products against Q8 activations close to the dequantized row's, and every kernel table agreeing.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend.h"
#include "gguf_builder.h"
#include "kernels.h"
#include "model_loader.h"

using namespace sluice::engine;

namespace {

template <class Block>
std::vector<float> dequant(tensor_type t, const Block& b, int k) {
  std::vector<float> out(static_cast<size_t>(k));
  dequantize_row(t, reinterpret_cast<const uint8_t*>(&b), out.data(), k);
  return out;
}

// Packs the 6-bit scales and mins of 8 sub-blocks as ggml's Q4_K/Q5_K do.
void pack_scales(const int sc[8], const int m[8], uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = uint8_t((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = uint8_t((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    q[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
}

std::vector<uint8_t> random_row(tensor_type t, int k, std::mt19937& rng) {
  std::vector<uint8_t> w(row_bytes_of(t, k));
  for (auto& b : w) b = uint8_t(rng());
  auto scale = [&](float lo) { return f32_to_fp16(lo + 0.001f * float(rng() % 100)); };
  const bool k_quant = t == tensor_type::q4_k || t == tensor_type::q5_k || t == tensor_type::q6_k;
  const size_t bb = row_bytes_of(t, k_quant ? qk_k : qk);
  for (size_t off = 0; off < w.size(); off += bb) {  // sane fp16 scales where each type keeps them
    uint16_t d = scale(0.001f), m = scale(-0.05f);
    if (t == tensor_type::q6_k) {
      std::memcpy(&w[off + 208], &d, 2);
    } else {
      std::memcpy(&w[off], &d, 2);
      if (t != tensor_type::q5_0) std::memcpy(&w[off + 2], &m, 2);
    }
  }
  return w;
}

}  // namespace

TEST_CASE("k-quants: Q5_0 and Q5_1 take the fifth bit from qh", "[kernels][kquants]") {
  block_q5_0 a{};
  a.d = f32_to_fp16(0.5f);
  for (int i = 0; i < 16; ++i) a.qs[i] = uint8_t(i | ((15 - i) << 4));
  const uint32_t qh = (1u << 1) | (1u << 16);  // element 1 and element 16 get +16
  std::memcpy(a.qh, &qh, 4);
  auto y = dequant(tensor_type::q5_0, a, 32);
  CHECK(y[0] == -8.0f);               // (0 - 16) * 0.5
  CHECK(y[1] == (1 + 16 - 16) * 0.5f);
  CHECK(y[15] == (15 - 16) * 0.5f);
  CHECK(y[16] == (15 + 16 - 16) * 0.5f);
  CHECK(y[31] == (0 - 16) * 0.5f);

  block_q5_1 b{};
  b.d = f32_to_fp16(0.25f);
  b.m = f32_to_fp16(-2.0f);
  for (int i = 0; i < 16; ++i) b.qs[i] = 0xFF;
  const uint32_t all = 0xFFFFFFFFu;
  std::memcpy(b.qh, &all, 4);
  auto z = dequant(tensor_type::q5_1, b, 32);
  for (float v : z) CHECK(v == 31 * 0.25f - 2.0f);
}

TEST_CASE("k-quants: Q4_K and Q5_K sub-block scales, mins and nibble order", "[kernels][kquants]") {
  const int sc[8] = {1, 2, 3, 63, 17, 33, 48, 5};
  const int mn[8] = {0, 1, 62, 4, 20, 9, 63, 31};
  block_q4_k a{};
  a.d = f32_to_fp16(0.5f);
  a.dmin = f32_to_fp16(0.25f);
  pack_scales(sc, mn, a.scales);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) a.qs[32 * c + l] = uint8_t((l % 16) | ((15 - l % 16) << 4));
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    k_scale_min(j, a.scales, s, m);
    CHECK(int(s) == sc[j]);
    CHECK(int(m) == mn[j]);
  }
  auto y = dequant(tensor_type::q4_k, a, 256);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      const int q = j % 2 == 0 ? l % 16 : 15 - l % 16;
      INFO("sub-block " << j << " element " << l);
      CHECK(y[size_t(32 * j + l)] == 0.5f * float(sc[j]) * float(q) - 0.25f * float(mn[j]));
    }
  }
  block_q5_k b{};
  b.d = a.d;
  b.dmin = a.dmin;
  std::memcpy(b.scales, a.scales, 12);
  std::memcpy(b.qs, a.qs, sizeof a.qs);
  for (int l = 0; l < 32; ++l) b.qh[l] = uint8_t(l % 2 == 0 ? 0x55 : 0xAA);  // even sub-blocks of even l, odd of odd
  auto z = dequant(tensor_type::q5_k, b, 256);
  for (int j = 0; j < 8; ++j) {
    for (int l = 0; l < 32; ++l) {
      const int q = (j % 2 == 0 ? l % 16 : 15 - l % 16) + ((l % 2) == (j % 2) ? 16 : 0);
      INFO("sub-block " << j << " element " << l);
      CHECK(z[size_t(32 * j + l)] == 0.5f * float(sc[j]) * float(q) - 0.25f * float(mn[j]));
    }
  }
}

TEST_CASE("k-quants: Q6_K low nibbles, high bits and the 16 scales", "[kernels][kquants]") {
  block_q6_k b{};
  b.d = f32_to_fp16(0.125f);
  for (int i = 0; i < 16; ++i) b.scales[i] = int8_t(i % 2 == 0 ? i + 1 : -(i + 1));
  // element e = 128 h + 32 p + l: low nibble and high 2 bits chosen so that q = (l + 7 p + h) % 64
  for (int h = 0; h < 2; ++h) {
    for (int p = 0; p < 4; ++p) {
      for (int l = 0; l < 32; ++l) {
        const int q = (l + 7 * p + h) % 64;
        uint8_t& lo = b.ql[64 * h + (p % 2) * 32 + l];
        lo = uint8_t(p / 2 == 0 ? (lo & 0xF0) | (q & 0xF) : (lo & 0x0F) | ((q & 0xF) << 4));
        b.qh[32 * h + l] = uint8_t(b.qh[32 * h + l] | ((q >> 4) << (2 * p)));
      }
    }
  }
  auto y = dequant(tensor_type::q6_k, b, 256);
  for (int h = 0; h < 2; ++h) {
    for (int p = 0; p < 4; ++p) {
      for (int l = 0; l < 32; ++l) {
        const int q = (l + 7 * p + h) % 64 - 32;
        const int scale = b.scales[8 * h + 2 * p + l / 16];
        INFO("half " << h << " part " << p << " element " << l);
        CHECK(y[size_t(128 * h + 32 * p + l)] == 0.125f * float(scale) * float(q));
      }
    }
  }
}

TEST_CASE("k-quants: dot products against Q8 activations match the dequantized rows", "[kernels][kquants]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int k = 1536;  // a multiple of 256 (SmolLM2's FFN width)
  for (tensor_type t : {tensor_type::q5_0, tensor_type::q5_1, tensor_type::q4_k, tensor_type::q5_k, tensor_type::q6_k}) {
    INFO("type " << int(t));
    const int rows = 7;
    std::vector<uint8_t> w;
    for (int r = 0; r < rows; ++r) {
      auto row = random_row(t, k, rng);
      w.insert(w.end(), row.begin(), row.end());
    }
    const int tokens = 6;  // a group of 4 (the SIMD code unpacks each block once for 4 tokens) and a rest
    std::vector<float> x(size_t(tokens) * k);
    for (float& v : x) v = nd(rng);
    std::vector<block_q8_act> xq(size_t(tokens) * (k / qk));
    for (int tok = 0; tok < tokens; ++tok) scalar_kernels().quantize_q8(&x[size_t(tok) * k], &xq[size_t(tok) * (k / qk)], k);
    matmul_args m;
    m.type = t;
    m.w = w.data();
    m.row_bytes = row_bytes_of(t, k);
    m.k = k;
    m.r0 = 0;
    m.r1 = rows;
    m.nt = tokens;
    m.xq = xq.data();
    m.ldxq = k / qk;
    m.ldy = rows;
    std::vector<float> ys(size_t(tokens) * rows);
    m.y = ys.data();
    scalar_kernels().matmul(m);
    std::vector<std::vector<float>> simd;  // every SIMD table this CPU runs (Q5_0, Q4_K, Q6_K have SIMD code)
    for (const kernel_table* kt : {avx2_kernels(), vnni_kernels(), &cpu_kernels()}) {
      if (!kt || (kt != &cpu_kernels() && kt == &scalar_kernels())) continue;
      if (kt == vnni_kernels() && &cpu_kernels() != vnni_kernels()) continue;  // (not runnable here)
      std::vector<float> y(size_t(tokens) * rows, 1.0f);
      m.y = y.data();
      kt->matmul(m);
      simd.push_back(std::move(y));
    }
    std::vector<float> deq(static_cast<size_t>(k));
    for (int tok = 0; tok < tokens; ++tok) {
      for (int r = 0; r < rows; ++r) {
        dequantize_row(t, w.data() + size_t(r) * m.row_bytes, deq.data(), k);
        double ref = 0.0, norm = 0.0;
        for (int i = 0; i < k; ++i) {
          ref += double(deq[size_t(i)]) * double(x[size_t(tok) * k + i]);
          norm += std::fabs(double(deq[size_t(i)]) * double(x[size_t(tok) * k + i]));
        }
        const float got = ys[size_t(tok) * rows + r];
        CHECK(std::fabs(got - ref) <= 0.01 * norm);  // activation rounding only
        for (const auto& yc : simd)  // SIMD sums in another order
          CHECK(yc[size_t(tok) * rows + r] == Approx(got).epsilon(1e-5).margin(1e-5 * norm));
      }
    }
  }
}

// The SIMD matmuls lay rows out once per tile of R rows and walk the tokens in tiles of R x T (VNNI 4 x 3, AVX2
// 2 x 2, then single tokens and smaller row tiles), one lane per group of weights: 32-groups over whole vectors,
// the rest in one more vector of groups of 4, 8, 16 or 32 (Q6_K: 16-groups throughout), the last vector padded.
// Covered: every combination of a tile's rows and tokens, row ranges that start inside a tile and leave a ragged
// end, one block per row, every group size of the second segment for 8 and 16 lanes (Q5 k = 32 ... 800), one
// token (decode: 4 rows at a time, then single rows; k = 640 is Gemma 3 270M's), accumulation, and ldy wider
// than the rows (the entries between stay untouched).
TEST_CASE("k-quants: SIMD matmuls equal the scalar one for every tile shape and ragged edge", "[kernels][kquants]") {
  std::vector<const kernel_table*> tables;
  if (avx2_kernels() && &cpu_kernels() != &scalar_kernels()) tables.push_back(avx2_kernels());
  if (vnni_kernels() && &cpu_kernels() == vnni_kernels()) tables.push_back(vnni_kernels());
  if (tables.empty()) return;  // no SIMD kernels on this CPU
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int rows = 11, max_tokens = 9, ldy = 13;
  for (tensor_type t : {tensor_type::q5_0, tensor_type::q5_1, tensor_type::q4_k, tensor_type::q5_k, tensor_type::q6_k}) {
    const bool k_quant = t == tensor_type::q4_k || t == tensor_type::q5_k || t == tensor_type::q6_k;
    for (int k : k_quant ? std::vector<int>{256, 768, 1536} : std::vector<int>{32, 352, 416, 512, 576, 608, 640, 800}) {
      std::vector<uint8_t> w;
      for (int r = 0; r < rows; ++r) {
        auto row = random_row(t, k, rng);
        w.insert(w.end(), row.begin(), row.end());
      }
      const size_t rb = row_bytes_of(t, k);
      std::vector<float> x(size_t(max_tokens) * k);
      for (float& v : x) v = nd(rng);
      std::vector<block_q8_act> xq(size_t(max_tokens) * (k / qk));
      for (int tok = 0; tok < max_tokens; ++tok)
        scalar_kernels().quantize_q8(&x[size_t(tok) * k], &xq[size_t(tok) * (k / qk)], k);
      // Sum of |w x| per (token, row): the scale of the float rounding allowed.
      std::vector<double> norm(size_t(max_tokens) * rows);
      std::vector<float> deq(static_cast<size_t>(k));
      for (int r = 0; r < rows; ++r) {
        dequantize_row(t, w.data() + size_t(r) * rb, deq.data(), k);
        for (int tok = 0; tok < max_tokens; ++tok)
          for (int i = 0; i < k; ++i) norm[size_t(tok) * rows + r] += std::fabs(double(deq[size_t(i)]) * x[size_t(tok) * k + i]);
      }
      for (auto [r0, r1] : {std::pair{0, 11}, {1, 8}, {3, 4}, {2, 4}, {5, 10}, {0, 6}}) {
        for (int nt : {1, 2, 3, 4, 5, 6, 7, 9}) {
          for (bool acc : {false, true}) {
            matmul_args m;
            m.type = t, m.w = w.data(), m.row_bytes = rb, m.k = k, m.r0 = r0, m.r1 = r1, m.nt = nt;
            m.xq = xq.data(), m.ldxq = k / qk, m.ldy = ldy, m.accumulate = acc;
            std::vector<float> y0(size_t(nt) * ldy);
            for (float& v : y0) v = nd(rng);
            std::vector<float> ref = y0;
            m.y = ref.data();
            scalar_kernels().matmul(m);
            for (const kernel_table* kt : tables) {
              std::vector<float> got = y0;
              m.y = got.data();
              kt->matmul(m);
              for (int tok = 0; tok < nt; ++tok) {
                for (int c = 0; c < ldy; ++c) {
                  INFO("type " << int(t) << " k " << k << " kernels " << kt->name << " rows [" << r0 << ", " << r1
                                << ") tokens " << nt << " accumulate " << acc << " token " << tok << " column " << c);
                  const size_t i = size_t(tok) * ldy + c;
                  if (c < r0 || c >= r1) {
                    REQUIRE(got[i] == y0[i]);
                  } else {
                    REQUIRE(got[i] == Approx(ref[i]).epsilon(1e-5).margin(1e-5 * norm[size_t(tok) * rows + c]));
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

namespace {

std::string data_path(const std::string& f) { return sluice::engine::test::source_dir() + "/test/engine/data/" + f; }

double rel_l2(const float* a, const float* ref, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    num += (double(a[i]) - double(ref[i])) * (double(a[i]) - double(ref[i]));
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / den);
}

std::vector<const weight*> weights_of(const llama_model& m) {
  std::vector<const weight*> out{&m.tok_embd, &m.output};
  for (const llama_layer& l : m.layers) {
    for (const weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) out.push_back(w);
  }
  return out;
}

}  // namespace

// tiny-kmix.gguf holds random K-quant blocks laid out like llama.cpp's Q4_K_M (Q4_K, Q5_K, Q6_K tensors);
// tiny-kmix-f32.gguf the same weights dequantized by the gguf package's reference code (golden/make_tiny_models.py).
TEST_CASE("k-quants: dequantized tensors equal the gguf package's reference bit for bit", "[kquants][golden]") {
  auto kq = load_model_file(data_path("tiny-kmix.gguf"));
  auto f32 = load_model_file(data_path("tiny-kmix-f32.gguf"));
  REQUIRE(kq.has_value());
  REQUIRE(f32.has_value());
  const auto a = weights_of(*kq->model), b = weights_of(*f32->model);
  REQUIRE(a.size() == b.size());
  std::vector<tensor_type> seen;
  for (size_t i = 0; i < a.size(); ++i) {
    REQUIRE(b[i]->type == tensor_type::f32);
    REQUIRE(a[i]->rows == b[i]->rows);
    seen.push_back(a[i]->type);
    std::vector<float> row(static_cast<size_t>(a[i]->cols));
    for (int r = 0; r < a[i]->rows; ++r) {
      dequantize_row(a[i]->type, a[i]->data + size_t(r) * a[i]->row_bytes, row.data(), a[i]->cols);
      INFO("tensor " << i << " row " << r);
      REQUIRE(std::memcmp(row.data(), b[i]->data + size_t(r) * b[i]->row_bytes, row.size() * 4) == 0);
    }
  }
  for (tensor_type t : {tensor_type::q4_k, tensor_type::q5_k, tensor_type::q6_k})
    CHECK(std::find(seen.begin(), seen.end(), t) != seen.end());
}

TEST_CASE("k-quants: a Q4_K_M-style model's logits match its F32 twin's", "[kquants][golden]") {
  auto kq = load_model_file(data_path("tiny-kmix.gguf"));
  auto f32 = load_model_file(data_path("tiny-kmix-f32.gguf"));
  REQUIRE(kq.has_value());
  REQUIRE(f32.has_value());
  const std::vector<token_id> tokens{10, 20, 30, 40, 50, 60, 70, 80, 264, 5, 99, 100};
  auto ref_be = make_cpu_backend(*f32->model, 2, kv_type::f16, &scalar_kernels());
  const auto ref = logits_for_sequence(*ref_be, tokens);
  const size_t V = size_t(kq->model->hp.n_vocab);
  for (const kernel_table* kt : {&cpu_kernels(), &scalar_kernels()}) {
    auto be = make_cpu_backend(*kq->model, 2, kv_type::f16, kt);
    const auto got = logits_for_sequence(*be, tokens);
    REQUIRE(got.size() == ref.size());
    int same_argmax = 0;
    for (size_t p = 0; p < tokens.size(); ++p) {
      const double err = rel_l2(got.data() + p * V, ref.data() + p * V, V);
      INFO("kernels " << kt->name << " position " << p << " rel L2 " << err);
      CHECK(err < 5e-2);  // Q8 activations against exact F32 ones, in a random (chaotic) model
      const auto* g = got.data() + p * V;
      const auto* r = ref.data() + p * V;
      same_argmax += std::max_element(g, g + V) - g == std::max_element(r, r + V) - r;
    }
    CHECK(same_argmax >= int(tokens.size()) - 1);
  }
}

TEST_CASE("k-quants: Q5_0 and Q5_1 models are closer to their float original than Q4_0 and Q4_1", "[kquants][golden]") {
  // The tiny models of one tie setting hold the same random weights (same seed, same draws): untied f32, q4_0,
  // q5_0; tied f16, q4_1, q5_1. A fifth bit read from the wrong place would not beat four bits.
  const std::vector<token_id> tokens{10, 20, 30, 40, 50, 60, 70, 80};
  auto logits = [&](const std::string& q) {
    auto lm = load_model_file(data_path("tiny-" + q + ".gguf"));
    REQUIRE(lm.has_value());
    auto be = make_cpu_backend(*lm->model, 2, kv_type::f16);
    return std::pair(logits_for_sequence(*be, tokens), size_t(lm->model->hp.n_vocab));
  };
  auto mean_err = [&](const std::string& q, const std::string& ref) {
    auto [a, V] = logits(q);
    auto [b, V2] = logits(ref);
    REQUIRE(V == V2);
    double sum = 0.0;
    for (size_t p = 0; p < tokens.size(); ++p) sum += rel_l2(a.data() + p * V, b.data() + p * V, V);
    return sum / double(tokens.size());
  };
  const double q5_0 = mean_err("q5_0", "f32"), q4_0 = mean_err("q4_0", "f32");
  const double q5_1 = mean_err("q5_1", "f16"), q4_1 = mean_err("q4_1", "f16");
  INFO("mean rel L2 to the float model: q5_0 " << q5_0 << " q4_0 " << q4_0 << " q5_1 " << q5_1 << " q4_1 " << q4_1);
  CHECK(q5_0 < 0.75 * q4_0);
  CHECK(q5_1 < 0.75 * q4_1);
}
