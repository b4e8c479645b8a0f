// The public engine API on a tiny committed model: load errors, generation through the scheduler,
// continuous batching (sequences decoded together give the same tokens as alone), cancel, context
// overflow, argument validation, stats, and shutdown with sequences still running.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gguf_builder.h"
#include "sluice/engine/engine.h"

using namespace sluice::engine;

namespace {

class recorder final : public sequence_observer {
 public:
  void on_token(const token_event& ev) override {
    std::lock_guard lk(mu_);
    if (finished_) bad_order = true;
    tokens.push_back(ev.token);
    text += ev.text;
    logprobs.push_back(ev.logprob);
    tops.push_back(ev.top.size());
  }
  void on_finish(const finish_info& i) override {
    std::lock_guard lk(mu_);
    if (finished_) bad_order = true;
    info = i;
    finished_ = true;
    cv_.notify_all();
  }
  bool wait_for(std::chrono::milliseconds d) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, d, [&] { return finished_; });
  }
  void wait() { REQUIRE(wait_for(std::chrono::seconds(60))); }
  bool finished() {
    std::lock_guard lk(mu_);
    return finished_;
  }
  std::vector<token_id> tokens;
  std::vector<float> logprobs;
  std::vector<size_t> tops;
  std::string text;
  finish_info info;
  bool bad_order = false;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
};

std::unique_ptr<engine> load_tiny(int max_sequences = 4, int context = 128) {
  load_options lo;
  lo.path = sluice::engine::test::source_dir() + "/test/engine/data/tiny-q4_1.gguf";
  lo.threads = 2;
  lo.context_tokens = context;
  lo.max_sequences = max_sequences;
  auto e = engine::load(lo);
  REQUIRE(e.has_value());
  return std::move(*e);
}

sampling_params greedy(int n) {
  sampling_params p;
  p.temperature = 0.0f;
  p.max_tokens = n;
  return p;
}

const std::vector<token_id> prompt_a = {10, 20, 30, 40, 50};
const std::vector<token_id> prompt_b = {264, 5, 99, 100, 101, 7, 7};

}  // namespace

TEST_CASE("engine: load reports model info and clear errors", "[engine_api]") {
  auto e = load_tiny();
  const model_info& mi = e->info();
  CHECK(mi.architecture == "llama");
  CHECK(mi.name == "tiny-q4_1");
  CHECK(mi.n_layer == 2);
  CHECK(mi.n_embd == 64);
  CHECK(mi.n_head_kv == 2);
  CHECK(mi.context_tokens == 128);
  CHECK(mi.chat_template == "chatml");
  CHECK(mi.n_params > 0);
  load_options lo;
  lo.path = "/nonexistent.gguf";
  auto bad = engine::load(lo);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::io);
  lo.path = sluice::engine::test::source_dir() + "/test/engine/golden/make_tiny_models.py";
  auto notgguf = engine::load(lo);
  REQUIRE_FALSE(notgguf.has_value());
  CHECK(notgguf.error().code == errc::bad_file);
}

TEST_CASE("engine: greedy generation runs to max_tokens with log-probs", "[engine_api]") {
  auto e = load_tiny();
  auto r = std::make_shared<recorder>();
  auto p = greedy(12);
  p.logprobs = true;
  p.top_logprobs = 3;
  REQUIRE(e->submit(prompt_a, p, r).has_value());
  r->wait();
  CHECK_FALSE(r->bad_order);
  CHECK(r->info.reason == finish_reason::length);
  CHECK(r->info.tokens_prompt == 5);
  CHECK(r->info.tokens_generated == 12);
  REQUIRE(r->tokens.size() == 12);
  for (float lp : r->logprobs) CHECK(lp <= 0.0f);
  for (size_t n : r->tops) CHECK(n == 3);
  auto s = e->get_stats();
  CHECK(s.tokens_prefilled >= 5);
  CHECK(s.tokens_decoded >= 11);
}

TEST_CASE("engine: sequences batched together produce the same tokens as alone", "[engine_api]") {
  auto e = load_tiny();
  auto alone_a = std::make_shared<recorder>(), alone_b = std::make_shared<recorder>();
  REQUIRE(e->submit(prompt_a, greedy(20), alone_a).has_value());
  alone_a->wait();
  REQUIRE(e->submit(prompt_b, greedy(20), alone_b).has_value());
  alone_b->wait();
  std::vector<std::shared_ptr<recorder>> rs;
  for (int i = 0; i < 6; ++i) {  // more than max_sequences: some wait in the queue
    rs.push_back(std::make_shared<recorder>());
    REQUIRE(e->submit(i % 2 ? prompt_b : prompt_a, greedy(20), rs.back()).has_value());
  }
  for (int i = 0; i < 6; ++i) {
    rs[size_t(i)]->wait();
    CHECK(rs[size_t(i)]->tokens == (i % 2 ? alone_b->tokens : alone_a->tokens));
  }
}

TEST_CASE("engine: seeded sampling is reproducible", "[engine_api]") {
  auto e = load_tiny();
  sampling_params p;
  p.temperature = 1.0f;
  p.max_tokens = 16;
  p.seed = 1234;
  auto r1 = std::make_shared<recorder>(), r2 = std::make_shared<recorder>();
  REQUIRE(e->submit(prompt_a, p, r1).has_value());
  REQUIRE(e->submit(prompt_a, p, r2).has_value());
  r1->wait();
  r2->wait();
  CHECK(r1->tokens == r2->tokens);
}

TEST_CASE("engine: cancel finishes a sequence once, as cancelled", "[engine_api]") {
  auto e = load_tiny(1, 256);
  auto running = std::make_shared<recorder>(), queued = std::make_shared<recorder>();
  auto id1 = e->submit(prompt_a, greedy(200), running);
  auto id2 = e->submit(prompt_b, greedy(200), queued);
  REQUIRE(id1.has_value());
  REQUIRE(id2.has_value());
  e->cancel(*id2);  // still queued behind the first (max_sequences = 1)
  e->cancel(*id1);
  e->cancel(*id1);       // idempotent
  e->cancel(987654321);  // unknown: ignored
  running->wait();
  queued->wait();
  CHECK(running->info.reason == finish_reason::cancelled);
  CHECK(queued->info.reason == finish_reason::cancelled);
  CHECK(queued->tokens.empty());
  CHECK_FALSE(running->bad_order);
  // The engine keeps serving after cancellations.
  auto after = std::make_shared<recorder>();
  REQUIRE(e->submit(prompt_a, greedy(3), after).has_value());
  after->wait();
  CHECK(after->info.reason == finish_reason::length);
}

TEST_CASE("engine: bad arguments and context overflow are errors", "[engine_api]") {
  auto e = load_tiny(2, 64);
  auto r = std::make_shared<recorder>();
  auto over = e->submit(std::vector<token_id>(40, 10), greedy(30), r);
  REQUIRE_FALSE(over.has_value());
  CHECK(over.error().code == errc::context_overflow);
  CHECK(e->submit({}, greedy(3), r).error().code == errc::invalid_argument);
  CHECK(e->submit({100000}, greedy(3), r).error().code == errc::invalid_argument);
  CHECK(e->submit(prompt_a, greedy(0), r).error().code == errc::invalid_argument);
  CHECK(e->submit(prompt_a, greedy(3), nullptr).error().code == errc::invalid_argument);
  auto p = greedy(3);
  p.top_p = 0.0f;
  CHECK(e->submit(prompt_a, p, r).error().code == errc::invalid_argument);
  p = greedy(3);
  p.temperature = -1.0f;
  CHECK(e->submit(prompt_a, p, r).error().code == errc::invalid_argument);
  p = greedy(3);
  p.top_logprobs = 21;
  CHECK(e->submit(prompt_a, p, r).error().code == errc::invalid_argument);
  CHECK_FALSE(r->finished());  // rejected submissions never call the observer
}

TEST_CASE("engine: destruction finishes running and queued sequences as cancelled", "[engine_api]") {
  auto running = std::make_shared<recorder>(), queued = std::make_shared<recorder>();
  {
    auto e = load_tiny(1, 256);
    REQUIRE(e->submit(prompt_a, greedy(250), running).has_value());
    REQUIRE(e->submit(prompt_b, greedy(10), queued).has_value());
  }
  CHECK(running->finished());
  CHECK(queued->finished());
  CHECK(queued->info.reason == finish_reason::cancelled);
}

TEST_CASE("engine: tokenize, detokenize and the chat template go through the model's tokenizer", "[engine_api]") {
  auto e = load_tiny();
  auto toks = e->tokenize("the cat", false, false);
  CHECK_FALSE(toks.empty());
  CHECK(e->detokenize(toks) == "the cat");
  std::vector<chat_message> msgs = {{"user", "hi"}};
  auto text = e->apply_chat_template(msgs, true);
  REQUIRE(text.has_value());
  CHECK(*text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  std::vector<chat_message> bad = {{"wizard", "hi"}};
  CHECK_FALSE(e->apply_chat_template(bad, true).has_value());
}

namespace {
load_options tiny_options(int max_sequences = 8, int context = 256) {
  load_options lo;
  lo.path = sluice::engine::test::source_dir() + "/test/engine/data/tiny-q4_1.gguf";
  lo.threads = 2;
  lo.context_tokens = context;
  lo.max_sequences = max_sequences;
  return lo;
}

std::unique_ptr<engine> load_with(const load_options& lo) {
  auto e = engine::load(lo);
  REQUIRE(e.has_value());
  return std::move(*e);
}

std::vector<token_id> tokens_from(int n, int seed) {
  std::vector<token_id> t;
  for (int i = 0; i < n; ++i) t.push_back(token_id(30 + (i * 7 + seed * 13) % 200));
  return t;
}

std::vector<token_id> concat(std::vector<token_id> a, const std::vector<token_id>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Greedy output of each prompt on an engine without the prefix cache, one at a time.
std::vector<std::vector<token_id>> reference(const std::vector<std::vector<token_id>>& prompts, int n) {
  auto lo = tiny_options();
  lo.prefix_cache = false;
  auto e = load_with(lo);
  std::vector<std::vector<token_id>> out;
  for (auto& p : prompts) {
    auto r = std::make_shared<recorder>();
    REQUIRE(e->submit(p, greedy(n), r).has_value());
    r->wait();
    CHECK(r->info.tokens_cached == 0);
    out.push_back(r->tokens);
  }
  CHECK(e->get_stats().tokens_prefix_cached == 0);
  return out;
}
}  // namespace

TEST_CASE("engine: shared, partly shared and unshared prefixes answer as without the cache", "[engine_api][prefix]") {
  const auto shared = tokens_from(40, 1);
  const std::vector<std::vector<token_id>> prompts = {
      concat(shared, {5, 6, 7}),            // first: computes everything
      concat(shared, {9, 8}),               // shares 40 tokens: 2 whole blocks of 16 read, 8 copied
      concat(tokens_from(20, 1), {3, 3}),   // shares 20 (diverges inside the second block): 16 read, 4 copied
      tokens_from(50, 2),                   // unshared
      concat(shared, {9, 8}),               // same as the second: everything but the last token
  };
  const auto ref = reference(prompts, 16);
  auto e = load_with(tiny_options());
  const int bt = e->get_stats().kv_block_tokens;
  REQUIRE(bt == 16);
  const int expect_cached[] = {0, 40, 20, 0, 41};
  uint64_t total = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = std::make_shared<recorder>();
    REQUIRE(e->submit(prompts[i], greedy(16), r).has_value());
    r->wait();
    INFO("prompt " << i);
    CHECK(r->info.tokens_cached == expect_cached[i]);
    CHECK(r->info.tokens_prompt == int(prompts[i].size()));
    CHECK(r->tokens == ref[i]);
    total += uint64_t(expect_cached[i]);
  }
  auto st = e->get_stats();
  CHECK(st.tokens_prefix_cached == total);
  CHECK(st.kv_blocks_cached > 0);
  CHECK(st.kv_blocks_used == st.kv_blocks_cached);  // nothing running: only the cache holds blocks
}

TEST_CASE("engine: concurrent sequences sharing a prefix compute it once and answer as alone", "[engine_api][prefix]") {
  const auto shared = tokens_from(100, 3);
  std::vector<std::vector<token_id>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(concat(shared, {token_id(40 + i), token_id(50 + i), 7}));
  const auto ref = reference(prompts, 12);
  auto e = load_with(tiny_options(8));
  std::vector<std::shared_ptr<recorder>> rs;
  for (auto& p : prompts) {
    rs.push_back(std::make_shared<recorder>());
    REQUIRE(e->submit(p, greedy(12), rs.back()).has_value());
  }
  int computed_prefix = 0;
  for (size_t i = 0; i < rs.size(); ++i) {
    rs[i]->wait();
    INFO("sequence " << i);
    CHECK(rs[i]->tokens == ref[i]);
    if (rs[i]->info.tokens_cached == 0) ++computed_prefix;
    // The 6 whole blocks of the shared 100 tokens: the first sequence's 7th block holds only 7 tokens while it
    // runs (103 prompt tokens), and partly filled blocks are not shared.
    else CHECK(rs[i]->info.tokens_cached == 96);
  }
  CHECK(computed_prefix == 1);  // the others waited for it and read it
  CHECK(e->get_stats().tokens_prefix_cached == 7 * 96);
}

TEST_CASE("engine: a flood of distinct prompts evicts within the KV budget", "[engine_api][prefix]") {
  auto probe = load_with(tiny_options());
  const auto st0 = probe->get_stats();
  const size_t block_bytes = (size_t(256) << 20) / size_t(st0.kv_blocks_total);
  probe.reset();
  auto lo = tiny_options(2);
  lo.kv_cache_bytes = block_bytes * 12;  // two running sequences of 5 blocks, little room to cache
  auto e = load_with(lo);
  REQUIRE(e->get_stats().kv_blocks_total == 12);
  std::vector<std::vector<token_id>> prompts;
  for (int i = 0; i < 12; ++i) prompts.push_back(tokens_from(70, 10 + i));
  const auto ref = reference({prompts[0], prompts[11]}, 8);
  std::vector<std::shared_ptr<recorder>> rs;
  for (auto& p : prompts) {
    rs.push_back(std::make_shared<recorder>());
    REQUIRE(e->submit(p, greedy(8), rs.back()).has_value());
  }
  for (auto& r : rs) {
    r->wait();
    CHECK(r->info.reason == finish_reason::length);
  }
  CHECK(rs[0]->tokens == ref[0]);
  CHECK(rs[11]->tokens == ref[1]);
  auto st = e->get_stats();
  CHECK(st.kv_blocks_used <= 12);
  CHECK(st.kv_blocks_evicted > 0);
  // The most recent prompt is still cached; the first was evicted and is computed again, the same.
  auto again = std::make_shared<recorder>();
  REQUIRE(e->submit(prompts[11], greedy(8), again).has_value());
  again->wait();
  CHECK(again->info.tokens_cached == 64);  // 4 full blocks: it ran to 77 tokens, its 5th block never filled
  CHECK(again->tokens == ref[1]);
  auto first = std::make_shared<recorder>();
  REQUIRE(e->submit(prompts[0], greedy(8), first).has_value());
  first->wait();
  CHECK(first->info.tokens_cached == 0);
  CHECK(first->tokens == ref[0]);
  // A sequence the whole pool cannot hold is refused with a clear error, not queued forever.
  auto huge = e->submit(tokens_from(200, 4), greedy(50), std::make_shared<recorder>());  // 16 blocks
  REQUIRE_FALSE(huge.has_value());
  CHECK(huge.error().code == errc::context_overflow);
  CHECK(huge.error().message.find("KV") != std::string::npos);
  // A KV cache too small for one block is a load error.
  auto lo2 = tiny_options();
  lo2.kv_cache_bytes = 1;
  auto bad = engine::load(lo2);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().code == errc::invalid_argument);
}

TEST_CASE("engine: a sequence waiting for KV blocks starts when others finish, or is cancelled cleanly", "[engine_api][prefix]") {
  auto probe = load_with(tiny_options());
  const size_t block_bytes = (size_t(256) << 20) / size_t(probe->get_stats().kv_blocks_total);
  probe.reset();
  auto lo = tiny_options(4);
  lo.kv_cache_bytes = block_bytes * 10;  // two sequences of 5 blocks at a time
  auto e = load_with(lo);
  std::vector<std::shared_ptr<recorder>> rs;
  std::vector<sequence_id> ids;
  for (int i = 0; i < 4; ++i) {
    rs.push_back(std::make_shared<recorder>());
    auto id = e->submit(tokens_from(40, 30 + i), greedy(40), rs.back());  // 80 tokens: 5 blocks
    REQUIRE(id.has_value());
    ids.push_back(*id);
  }
  e->cancel(ids[3]);  // still waiting for blocks (or just started): either way it ends cancelled
  for (int i = 0; i < 3; ++i) {
    rs[size_t(i)]->wait();
    CHECK(rs[size_t(i)]->info.reason != finish_reason::error);
    CHECK(rs[size_t(i)]->info.reason != finish_reason::cancelled);
  }
  rs[3]->wait();
  CHECK(rs[3]->info.reason == finish_reason::cancelled);
  auto st = e->get_stats();
  CHECK(st.kv_blocks_used == st.kv_blocks_cached);  // every sequence's own blocks came back
  CHECK(st.kv_blocks_used <= 10);
}

namespace {
// Counts a running stream's tokens as they come.
class counter final : public sequence_observer {
 public:
  void on_token(const token_event&) override { ++tokens; }
  void on_finish(const finish_info&) override { done = true; }
  std::atomic<int> tokens{0};
  std::atomic<bool> done{false};
};
}  // namespace

TEST_CASE("engine: a long prompt is prefilled in chunks while running streams keep decoding", "[engine_api][chunked]") {
  auto lo = tiny_options(4);
  lo.step_token_budget = 32;
  lo.prefix_cache = false;
  auto e = load_with(lo);
  // The stream must still be running when the long prompt is done; on a busy machine this thread can sleep
  // through the whole stream (240 tiny-model steps), so such a round is retried rather than counted.
  for (int attempt = 0;; ++attempt) {
    REQUIRE(attempt < 5);
    auto stream = std::make_shared<counter>();
    auto id = e->submit(prompt_a, greedy(240), stream);
    REQUIRE(id.has_value());
    while (stream->tokens.load() < 2 && !stream->done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // 200 prompt tokens, at most 32 tokens per step (31 beside the stream's one): at least 7 steps, each of
    // which also gives the stream a token.
    const uint64_t prefilled0 = e->get_stats().tokens_prefilled;
    const int before = stream->tokens.load();
    auto longp = std::make_shared<recorder>();
    REQUIRE(e->submit(tokens_from(200, 5), greedy(1), longp).has_value());
    longp->wait();
    const int during = stream->tokens.load() - before;
    const bool overlapped = !stream->done.load();
    e->cancel(*id);
    CHECK(e->get_stats().tokens_prefilled - prefilled0 == 200);
    if (!overlapped) continue;
    INFO("stream tokens " << stream->tokens.load() << " during " << during);
    CHECK(during >= 6);
    break;
  }
}
