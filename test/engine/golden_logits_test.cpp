// Logits and greedy continuations against llama.cpp's (goldens written by golden/make_logits_golden.py):
// every tiny model type on both the SIMD and the scalar kernels, the default SmolLM2 model (scripts/setup.sh)
// and Gemma 3 270M (scripts/setup.sh --with-gemma).
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

// 1e-2 relative L2, except Q5_1, Qwen 3 and Gemma 3. Q5_1 matches llama.cpp to 1e-2 on the first positions and
// drifts to 2% on later ones of the second sequence (the one with a run of repeated tokens); its distance to the
// float model equals llama.cpp's (mean 0.209 both). On the tiny Qwen 3 and Gemma 3 models llama.cpp's own runs
// with an f16 and an f32 KV cache differ by 1.0-2.4% per position (measured with make_logits_golden.py's
// settings), so ours, within 2.3% of its f16 run, is inside its own precision spread. (The K-quant mix has its
// own test below.)
double tolerance(std::string_view q) { return q == "q5_1" ? 3e-2 : q == "qwen3" || q == "gemma3" ? 2.5e-2 : 1e-2; }

TEST_CASE("golden: tiny models of every tensor type match llama.cpp's logits", "[golden]") {
  for (const char* q : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "qwen2", "qwen3", "gemma3"}) {
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

TEST_CASE("golden: a sliding-window model decodes step by step and in chunks as it prefills", "[golden]") {
  // Tiny Gemma 3: a 5-position window on five of six layers. 40 positions over a shuffled block table put the
  // window's first position in the middle of a 16-position block, at a block's start and across a boundary.
  auto lm = load_model_file(data_path("tiny-gemma3.gguf"));
  REQUIRE(lm.has_value());
  REQUIRE(lm->model->hp.n_swa == 5);
  auto be = make_cpu_backend(*lm->model, 2, kv_type::f16);
  std::vector<token_id> toks;
  for (int i = 0; i < 40; ++i) toks.push_back((i * 37 + 11) % 260);
  const auto ref = logits_for_sequence(*be, toks);
  const size_t V = size_t(lm->model->hp.n_vocab);
  be->reserve_kv_blocks(16);
  std::vector<kv_block_id> table{9, 3, 14};
  for (int chunk : {1, 7}) {
    std::vector<float> out;
    for (size_t i = 0; i < toks.size(); i += size_t(chunk)) {
      batch_seq s;
      s.blocks = table;
      s.tokens = std::span<const token_id>(toks.data() + i, std::min(toks.size() - i, size_t(chunk)));
      s.pos0 = int(i);
      s.want = batch_seq::logits::all;
      be->forward(std::span<const batch_seq>(&s, 1), out);
      for (size_t j = 0; j < s.tokens.size(); ++j) {
        INFO("chunk " << chunk << " position " << i + j);
        CHECK(rel_l2(out.data() + j * V, ref.data() + (i + j) * V, int(V)) < 1e-6);
      }
    }
  }
}

// A real model against llama.cpp: logits at every position of each golden prompt (full vocabulary where the
// golden has it, llama.cpp's top 32 elsewhere), the argmax everywhere, and the greedy continuation through the
// public API up to llama.cpp's first near-tie.
// llama.cpp's top-1 minus top-2 logit below this: either token is fair. llama.cpp's own f16-KV and f32-KV runs
// were seen to pick different tokens at margins up to 0.2 (Gemma 3 Q8_0, chat prompt, 11th token).
constexpr float near_tie = 0.25f;

void check_real_model(const std::string& path, const std::string& prefix, std::initializer_list<const char*> names,
                      double full_bound, double top_bound, double mean_bound) {
  auto lm = load_model_file(path);
  REQUIRE(lm.has_value());
  auto be = make_cpu_backend(*lm->model, 2, kv_type::f16);
  load_options lo;
  lo.path = path;
  lo.threads = 2;
  lo.context_tokens = 1024;
  auto eng = engine::load(lo);
  REQUIRE(eng.has_value());
  for (const char* name : names) {
    golden g = read_golden(prefix + "-" + name);
    REQUIRE(g.n_vocab == lm->model->hp.n_vocab);
    auto logits = logits_for_sequence(*be, g.tokens);
    // Position 0 does not depend on attention order: our integer dot products equal llama.cpp's (1e-2). Later
    // positions: many layers amplify last-bit differences in attention (llama.cpp's own f16 vs f32 KV cache
    // differ by 1-8% on SmolLM2), so the bounds are looser; the argmax must agree.
    for (auto& [pos, row] : g.full) {
      double e = rel_l2(logits.data() + size_t(pos) * g.n_vocab, row.data(), g.n_vocab);
      INFO(prefix << "-" << name << " position " << pos << " rel L2 " << e);
      CHECK(e < (pos == 0 ? 1e-2 : full_bound));
    }
    double worst = 0.0, sum = 0.0;
    for (size_t p = 0; p < g.tokens.size(); ++p) {
      double e = top_rel_l2(logits, g.n_vocab, int(p), g.top[p]);
      worst = std::max(worst, e);
      sum += e;
      const float margin = g.top[p][0].second - g.top[p][1].second;
      INFO(prefix << "-" << name << " position " << p << " top-k rel L2 " << e << ", llama.cpp's top-2 margin "
                  << margin);
      CHECK(e < top_bound);
      // The argmax must agree unless llama.cpp's own top two are a near-tie.
      if (margin >= near_tie) CHECK(argmax(logits.data() + p * size_t(g.n_vocab), g.n_vocab) == g.top[p].front().first);
    }
    const double mean = sum / double(g.tokens.size());
    WARN(prefix << "-" << name << ": " << g.tokens.size() << " positions, top-k rel L2 worst " << worst << ", mean "
                << mean);
    CHECK(mean < mean_bound);
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
    // Past a near-tie (top-2 margin < near_tie in llama.cpp) either branch is within float noise: llama.cpp
    // itself flips there between its f16 and f32 KV caches or with flash attention. Up to it, identical
    // (an end-of-generation token ends ours early: the continuation is compared up to it).
    size_t tie = 0;
    while (tie < g.margins.size() && g.margins[tie] >= near_tie) ++tie;
    INFO(prefix << "-" << name << ": " << same << " of " << g.continuation.size()
                << " greedy tokens identical; first near-tie at " << tie);
    CHECK(same >= std::min<size_t>({32, tie, obs->tokens.size()}));
  }
}
}  // namespace

TEST_CASE("golden: default model logits and greedy continuations match llama.cpp", "[golden][default_model]") {
  // The default model is part of the test setup (scripts/setup.sh installs it): missing is a failure, not a skip.
  INFO("default model " << default_model() << " not found: run scripts/setup.sh");
  REQUIRE(std::ifstream(default_model()).good());
  check_real_model(default_model(), "smollm2", {"capital", "story", "chat"}, 0.15, 0.15, 0.05);
}

// A model file scripts/setup.sh writes with an option (the README's test command passes it): missing is a failure.
// Gemma 3 270M, 18 layers: llama.cpp's own f16-KV and f32-KV runs of the chat and 760-token prompts differ by up
// to 0.83 / 0.50 top-k relative L2 (1.03 on the Q8_0 copy, at the chat prompt's fourth position), 0.099 / 0.019
// on average, with argmax flips. Ours against its f16 run: 0.20 / 0.27 worst (0.49 on the Q8_0 copy), 0.061 /
// 0.020 mean; the chat prompt's fourth position alone (llama.cpp's most unstable) moves with the summation order
// of our kernels by 0.2-0.5. The bounds: a position at most 0.6, the mean at most llama.cpp's own average spread.
constexpr double gemma_top_bound = 0.6, gemma_mean_bound = 0.1;

static std::string test_model(const std::string& file, const char* option) {
  const std::string path = sluice::engine::test::source_dir() + "/models/" + file;
  INFO("model " << path << " not found: run scripts/setup.sh " << option);
  REQUIRE(std::ifstream(path).good());
  return path;
}

TEST_CASE("golden: Gemma 3 270M Q4_K_M logits and greedy continuations match llama.cpp", "[golden][gemma]") {
  const std::string path = test_model("gemma-3-270m-q4_k_m.gguf", "--with-gemma");
  check_real_model(path, "gemma3", {"capital", "chat", "long"}, 0.15, gemma_top_bound, gemma_mean_bound);
}

TEST_CASE("golden: the same models re-quantized to Q8_0 and Q4_1 match llama.cpp", "[golden][gemma]") {
  // scripts/requantize.py's copies of the shipped files: the architectures in the other common tensor types.
  check_real_model(test_model("gemma-3-270m-q8_0.gguf", "--with-variants"), "gemma3-q8_0", {"capital", "chat"}, 0.15,
                   gemma_top_bound, gemma_mean_bound);
  check_real_model(test_model("gemma-3-270m-q4_1.gguf", "--with-variants"), "gemma3-q4_1", {"capital", "chat"}, 0.15,
                   gemma_top_bound, gemma_mean_bound);
  check_real_model(test_model("SmolLM2-135M-Instruct.Q8_0.gguf", "--with-variants"), "smollm2-q8_0",
                   {"capital", "chat"}, 0.15, 0.15, 0.05);
}
