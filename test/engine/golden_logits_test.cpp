// Logits and greedy continuations against llama.cpp's (goldens written by golden/make_logits_golden.py):
// every tiny model type on both the SIMD and the scalar kernels, and the default SmolLM2 model when
// scripts/setup.sh has fetched it.
#include <catch2/catch.hpp>

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>

#include "backend.h"
#include "gguf_builder.h"
#include "kernels.h"
#include "model_loader.h"
#include "sluice/engine/engine.h"

using namespace sluice::engine;

namespace {

struct golden {
  std::vector<token_id> tokens;
  int n_vocab = 0;
  std::vector<std::pair<int, std::vector<float>>> full;  // (position, logits)
  std::vector<std::vector<std::pair<int, float>>> top;   // per position
  std::vector<token_id> continuation;
  std::vector<float> margins;  // llama.cpp's top-1 minus top-2 logit at each continuation step
};

golden read_golden(const std::string& name) {
  auto b = sluice::engine::test::read_file_bytes(sluice::engine::test::source_dir() + "/test/engine/golden/" + name + ".logits");
  REQUIRE(b.size() > 28);
  REQUIRE(std::memcmp(b.data(), "SLG1", 4) == 0);
  size_t at = 4;
  auto u32 = [&] { uint32_t v; REQUIRE(at + 4 <= b.size()); std::memcpy(&v, b.data() + at, 4); at += 4; return v; };
  auto f32 = [&] { float v; REQUIRE(at + 4 <= b.size()); std::memcpy(&v, b.data() + at, 4); at += 4; return v; };
  golden g;
  uint32_t n_tokens = u32(), n_vocab = u32(), n_full = u32(), dtype = u32(), top_k = u32(), n_cont = u32();
  g.n_vocab = int(n_vocab);
  for (uint32_t i = 0; i < n_tokens; ++i) g.tokens.push_back(int32_t(u32()));
  for (uint32_t i = 0; i < n_full; ++i) {
    int pos = int(u32());
    std::vector<float> row(n_vocab);
    for (auto& v : row) {
      if (dtype == 0) {
        v = f32();
      } else {
        uint16_t h;
        REQUIRE(at + 2 <= b.size());
        std::memcpy(&h, b.data() + at, 2);
        at += 2;
        v = fp16_to_f32(h);
      }
    }
    g.full.emplace_back(pos, std::move(row));
  }
  g.top.resize(n_tokens);
  for (uint32_t p = 0; p < n_tokens; ++p)
    for (uint32_t i = 0; i < top_k; ++i) {
      int id = int(u32());
      g.top[p].emplace_back(id, f32());
    }
  for (uint32_t i = 0; i < n_cont; ++i) g.continuation.push_back(int32_t(u32()));
  for (uint32_t i = 0; i < n_cont; ++i) g.margins.push_back(f32());
  REQUIRE(at == b.size());
  return g;
}

double rel_l2(const float* a, const float* ref, int n) {
  double num = 0, den = 0;
  for (int i = 0; i < n; ++i) { num += double(a[i] - ref[i]) * (a[i] - ref[i]); den += double(ref[i]) * ref[i]; }
  return std::sqrt(num / den);
}

// Relative L2 error over llama.cpp's top-k logits at one position.
double top_rel_l2(const std::vector<float>& ours, int n_vocab, int pos, const std::vector<std::pair<int, float>>& top) {
  std::vector<float> a, r;
  for (auto& [id, v] : top) { a.push_back(ours[size_t(pos) * n_vocab + id]); r.push_back(v); }
  return rel_l2(a.data(), r.data(), int(a.size()));
}

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) if (v[i] > v[best]) best = i;
  return best;
}

std::string data_path(const std::string& f) { return sluice::engine::test::source_dir() + "/test/engine/data/" + f; }
std::string default_model() { return sluice::engine::test::source_dir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }

}  // namespace

// 1e-2 relative L2, except Q5_1 and Qwen 3, which match llama.cpp to 1e-2 on the first positions and drift to
// 2% on later ones of the second sequence (the one with a run of repeated tokens). Q5_1's distance to the float
// model equals llama.cpp's (mean 0.209 both); Qwen 3's per-head Q/K norms sharpen attention on this random
// model, which amplifies rounding differences. Neither is explained further yet. (The K-quant mix has its own
// test below.)
double tolerance(std::string_view q) { return q == "q5_1" ? 3e-2 : q == "qwen3" ? 2.5e-2 : 1e-2; }

TEST_CASE("golden: tiny models of every tensor type match llama.cpp's logits", "[golden]") {
  for (const char* q : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "qwen2", "qwen3"}) {
    auto lm = load_model_file(data_path(std::string("tiny-") + q + ".gguf"));
    REQUIRE(lm.has_value());
    for (const kernel_table* kt : {&cpu_kernels(), &scalar_kernels()}) {
      auto be = make_cpu_backend(*lm->model, 2, kv_type::f16, kt);
      for (int s = 0; s < 2; ++s) {
        golden g = read_golden(std::string("tiny-") + q + "-" + std::to_string(s));
        REQUIRE(g.n_vocab == lm->model->hp.n_vocab);
        auto logits = logits_for_sequence(*be, g.tokens);
        REQUIRE(logits.size() == g.tokens.size() * size_t(g.n_vocab));
        for (auto& [pos, row] : g.full) {
          double err = rel_l2(logits.data() + size_t(pos) * g.n_vocab, row.data(), g.n_vocab);
          INFO(q << " kernels " << kt->name << " seq " << s << " pos " << pos << " rel L2 " << err);
          CHECK(err < tolerance(q));
        }
      }
    }
  }
}

// K-quants: llama.cpp quantizes the activations of K-quant weights per 256 values with one float scale (Q8_K);
// we per 32 with an fp16 scale, as for every other type, so the two differ by more than float noise. The
// reference is llama.cpp on tiny-kmix-f32.gguf (the same weights dequantized): ours must stay within 5% of it
// and, position by position on average, no further from it than llama.cpp's own K-quant run.
TEST_CASE("golden: the K-quant mix is as close to the exact model as llama.cpp's K-quant run", "[golden][kquants]") {
  auto lm = load_model_file(data_path("tiny-kmix.gguf"));
  REQUIRE(lm.has_value());
  for (const kernel_table* kt : {&cpu_kernels(), &scalar_kernels()}) {
    auto be = make_cpu_backend(*lm->model, 2, kv_type::f16, kt);
    for (int s = 0; s < 2; ++s) {
      golden exact = read_golden("tiny-kmix-f32-" + std::to_string(s));
      golden theirs = read_golden("tiny-kmix-" + std::to_string(s));
      REQUIRE(exact.tokens == theirs.tokens);
      auto logits = logits_for_sequence(*be, exact.tokens);
      double ours_sum = 0.0, theirs_sum = 0.0;
      for (size_t i = 0; i < exact.full.size(); ++i) {
        const auto& [pos, row] = exact.full[i];
        const double ours = rel_l2(logits.data() + size_t(pos) * exact.n_vocab, row.data(), exact.n_vocab);
        const double llama = rel_l2(theirs.full[i].second.data(), row.data(), exact.n_vocab);
        INFO("kernels " << kt->name << " seq " << s << " pos " << pos << " rel L2 to exact: ours " << ours
                        << ", llama.cpp " << llama);
        CHECK(ours < 5e-2);
        ours_sum += ours;
        theirs_sum += llama;
      }
      CHECK(ours_sum <= theirs_sum);
    }
  }
}

TEST_CASE("golden: batching several sequences gives the same logits as running each alone", "[golden]") {
  auto lm = load_model_file(data_path("tiny-q4_1.gguf"));
  REQUIRE(lm.has_value());
  auto be = make_cpu_backend(*lm->model, 2, kv_type::f16);
  golden g0 = read_golden("tiny-q4_1-0"), g1 = read_golden("tiny-q4_1-1");
  auto a0 = logits_for_sequence(*be, g0.tokens), a1 = logits_for_sequence(*be, g1.tokens);
  // Paged KV: block tables out of order and interleaved must not change a bit.
  be->reserve_kv_blocks(16);
  std::vector<kv_block_id> t0{7, 2, 9, 4}, t1{3, 8, 0, 5}, t2{15, 1, 12, 6};
  batch_seq b[2];
  b[0].blocks = t0; b[0].tokens = g0.tokens; b[0].want = batch_seq::logits::all;
  b[1].blocks = t1; b[1].tokens = g1.tokens; b[1].want = batch_seq::logits::all;
  REQUIRE(g0.tokens.size() <= 64);
  REQUIRE(g1.tokens.size() <= 64);
  std::vector<float> out;
  be->forward(b, out);
  const size_t V = size_t(g0.n_vocab);
  REQUIRE(out.size() == (g0.tokens.size() + g1.tokens.size()) * V);
  CHECK(std::equal(a0.begin(), a0.end(), out.begin()));
  CHECK(std::equal(a1.begin(), a1.end(), out.begin() + long(a0.size())));
  // Incremental decode (one token per step) equals the one-shot prefill.
  for (size_t i = 0; i < g1.tokens.size(); ++i) {
    batch_seq s;
    s.blocks = t2;
    s.tokens = std::span<const token_id>(g1.tokens.data() + i, 1);
    s.pos0 = int(i);
    be->forward(std::span<const batch_seq>(&s, 1), out);
    CHECK(rel_l2(out.data(), a1.data() + i * V, int(V)) < 1e-6);
  }
}

namespace {
class collector final : public sequence_observer {
 public:
  void on_token(const token_event& ev) override { std::lock_guard lk(mu); tokens.push_back(ev.token); }
  void on_finish(const finish_info& i) override { std::lock_guard lk(mu); info = i; done = true; cv.notify_all(); }
  void wait() { std::unique_lock lk(mu); cv.wait(lk, [&] { return done; }); }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::vector<token_id> tokens;
  finish_info info;
};
}  // namespace

TEST_CASE("golden: default model logits and greedy continuations match llama.cpp", "[golden][default_model]") {
  // The default model is part of the test setup (scripts/setup.sh installs it): missing is a failure, not a skip.
  INFO("default model " << default_model() << " not found: run scripts/setup.sh");
  REQUIRE(std::ifstream(default_model()).good());
  auto lm = load_model_file(default_model());
  REQUIRE(lm.has_value());
  auto be = make_cpu_backend(*lm->model, 2, kv_type::f16);
  load_options lo;
  lo.path = default_model();
  lo.threads = 2;
  lo.context_tokens = 256;
  auto eng = engine::load(lo);
  REQUIRE(eng.has_value());
  for (const char* name : {"capital", "story", "chat"}) {
    golden g = read_golden(std::string("smollm2-") + name);
    auto logits = logits_for_sequence(*be, g.tokens);
    // Position 0 does not depend on attention order: our integer dot products equal llama.cpp's.
    REQUIRE(g.full.front().first == 0);
    double e0 = rel_l2(logits.data(), g.full.front().second.data(), g.n_vocab);
    INFO(name << " position 0 rel L2 " << e0);
    CHECK(e0 < 1e-2);
    // Later positions: 30 layers amplify last-bit differences in attention (llama.cpp's own f16 vs f32
    // KV cache differ by 1-8% here), so the bound is looser; the argmax must agree.
    for (size_t p = 0; p < g.tokens.size(); ++p) {
      double e = top_rel_l2(logits, g.n_vocab, int(p), g.top[p]);
      INFO(name << " position " << p << " top-k rel L2 " << e);
      CHECK(e < 0.15);
      CHECK(argmax(logits.data() + p * size_t(g.n_vocab), g.n_vocab) == g.top[p].front().first);
    }
    // Greedy continuation through the public API (scheduler, sampler at temperature 0).
    sampling_params sp;
    sp.temperature = 0.0f;
    sp.max_tokens = int(g.continuation.size());
    auto obs = std::make_shared<collector>();
    auto id = (*eng)->submit(g.tokens, sp, obs);
    REQUIRE(id.has_value());
    obs->wait();
    size_t same = 0;
    while (same < obs->tokens.size() && same < g.continuation.size() && obs->tokens[same] == g.continuation[same]) ++same;
    // Past a near-tie (top-2 margin < 0.15 in llama.cpp) either branch is within float noise: llama.cpp
    // itself flips there between its f16 and f32 KV caches or with flash attention. Up to it, identical.
    size_t tie = 0;
    while (tie < g.margins.size() && g.margins[tie] >= 0.15f) ++tie;
    INFO(name << ": " << same << " of " << g.continuation.size() << " greedy tokens identical; first near-tie at " << tie);
    CHECK(same >= std::min<size_t>(32, tie));
  }
}
