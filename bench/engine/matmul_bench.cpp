// Kernel micro-benchmark: one thread, one weight matrix at a time in each quantized type, the shapes of
// SmolLM2-135M (576 -> 1536 for Q5_0 q/k/v/gate/up-like tensors, 1536 -> 576 for the K-quant ffn_down), times
// a prefill chunk of tokens and a single token, for every kernel table this CPU runs. Prints the best of
// several repetitions in multiply-adds per nanosecond. For A/B work on the kernels; the end-to-end comparison
// with llama.cpp is bench/engine/run.
// Usage: matmul_bench [--tokens N] [--reps N] [--types q5_0,q4_k,...] [--rows N] [--k N] (--rows/--k: other shape)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels.h"

namespace eng = sluice::engine;

namespace {

struct type_shape {
  const char* name;
  eng::tensor_type type;
  int rows, k;
};

// Random blocks with sane fp16 scales where each type keeps them.
std::vector<uint8_t> random_matrix(eng::tensor_type t, int rows, int k, std::mt19937& rng) {
  const size_t rb = eng::row_bytes_of(t, k);
  std::vector<uint8_t> w(rb * size_t(rows));
  for (auto& b : w) b = uint8_t(rng());
  const bool k_quant = t == eng::tensor_type::q4_k || t == eng::tensor_type::q5_k || t == eng::tensor_type::q6_k;
  const size_t bb = eng::row_bytes_of(t, k_quant ? eng::qk_k : eng::qk);
  for (size_t off = 0; off < w.size(); off += bb) {
    const uint16_t d = eng::f32_to_fp16(0.001f + 0.0001f * float(rng() % 100));
    const uint16_t m = eng::f32_to_fp16(-0.01f);
    if (t == eng::tensor_type::q6_k) {
      std::memcpy(&w[off + 208], &d, 2);
    } else {
      std::memcpy(&w[off], &d, 2);
      if (t != eng::tensor_type::q5_0 && t != eng::tensor_type::q4_0 && t != eng::tensor_type::q8_0)
        std::memcpy(&w[off + 2], &m, 2);
    }
  }
  return w;
}

}  // namespace

int main(int argc, char** argv) {
  int tokens = 256, reps = 5, rows = 0, k = 0;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--tokens") tokens = std::atoi(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--types") only = argv[i + 1];
    else if (a == "--rows") rows = std::atoi(argv[i + 1]);
    else if (a == "--k") k = std::atoi(argv[i + 1]);
  }
  const std::vector<type_shape> shapes = {
      {"q5_0", eng::tensor_type::q5_0, 1536, 576}, {"q5_1", eng::tensor_type::q5_1, 1536, 576},
      {"q4_k", eng::tensor_type::q4_k, 576, 1536}, {"q5_k", eng::tensor_type::q5_k, 576, 1536},
      {"q6_k", eng::tensor_type::q6_k, 576, 1536}, {"q8_0", eng::tensor_type::q8_0, 1536, 576},
      {"q4_1", eng::tensor_type::q4_1, 1536, 576},
  };
  std::vector<const eng::kernel_table*> tables{&eng::cpu_kernels()};
  if (eng::avx2_kernels() && tables[0] != eng::avx2_kernels()) tables.push_back(eng::avx2_kernels());
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::printf("%-6s %-11s %14s %14s\n", "type", "kernels", "MAC/ns tokens", "MAC/ns 1 token");
  for (type_shape s : shapes) {
    if (!only.empty() && only.find(s.name) == std::string::npos) continue;
    if (rows > 0) s.rows = rows;
    if (k > 0) s.k = k;
    const auto w = random_matrix(s.type, s.rows, s.k, rng);
    std::vector<float> x(size_t(tokens) * s.k);
    for (float& v : x) v = nd(rng);
    std::vector<eng::block_q8_act> xq(size_t(tokens) * (s.k / eng::qk));
    for (int t = 0; t < tokens; ++t) eng::scalar_kernels().quantize_q8(&x[size_t(t) * s.k], &xq[size_t(t) * (s.k / eng::qk)], s.k);
    std::vector<float> y(size_t(tokens) * s.rows);
    for (const eng::kernel_table* kt : tables) {
      double best[2] = {0.0, 0.0};
      for (int pass = 0; pass < 2; ++pass) {
        const int nt = pass == 0 ? tokens : 1;
        eng::matmul_args m;
        m.type = s.type, m.w = w.data(), m.row_bytes = eng::row_bytes_of(s.type, s.k), m.k = s.k;
        m.r0 = 0, m.r1 = s.rows, m.nt = nt, m.xq = xq.data(), m.ldxq = s.k / eng::qk, m.y = y.data(), m.ldy = s.rows;
        const int inner = pass == 0 ? 1 : 64;  // one token is short: time several calls
        for (int r = 0; r < reps + 1; ++r) {
          const auto t0 = std::chrono::steady_clock::now();
          for (int i = 0; i < inner; ++i) kt->matmul(m);
          const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
          if (r > 0) best[pass] = std::max(best[pass], double(s.rows) * s.k * nt * inner / ns);  // r 0: warm-up
        }
      }
      std::printf("%-6s %-11s %14.2f %14.2f\n", s.name, kt->name, best[0], best[1]);
    }
  }
}
