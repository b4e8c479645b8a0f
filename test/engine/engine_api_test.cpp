// The public engine API on a tiny committed model: load errors, generation through the scheduler,
// continuous batching (sequences decoded together give the same tokens as alone), cancel, context
// overflow, argument validation, stats, and shutdown with sequences still running.
#include <catch2/catch.hpp>

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

TEST_CASE("engine: a prompt sharing a prefix with an earlier one reuses its KV and answers the same", "[engine_api][prefix]") {
  std::vector<token_id> shared;
  for (int i = 0; i < 40; ++i) shared.push_back(token_id(30 + (i * 7) % 200));
  std::vector<token_id> p1 = shared, p2 = shared;
  p1.insert(p1.end(), {5, 6, 7});
  p2.insert(p2.end(), {9, 8});

  // Reference: the same prompts on an engine without the prefix cache.
  load_options lo;
  lo.path = sluice::engine::test::source_dir() + "/test/engine/data/tiny-q4_1.gguf";
  lo.threads = 2;
  lo.context_tokens = 128;
  lo.prefix_cache_bytes = 0;
  auto plain = engine::load(lo);
  REQUIRE(plain.has_value());
  auto ref2 = std::make_shared<recorder>();
  REQUIRE((*plain)->submit(p2, greedy(16), ref2).has_value());
  ref2->wait();
  CHECK(ref2->info.tokens_cached == 0);

  auto e = load_tiny();
  auto r1 = std::make_shared<recorder>();
  REQUIRE(e->submit(p1, greedy(16), r1).has_value());
  r1->wait();
  CHECK(r1->info.tokens_cached == 0);
  auto r2 = std::make_shared<recorder>();
  REQUIRE(e->submit(p2, greedy(16), r2).has_value());
  r2->wait();
  CHECK(r2->info.tokens_cached == 40);  // the shared prefix; the rest is computed
  CHECK(r2->tokens == ref2->tokens);
  CHECK(e->get_stats().tokens_prefix_cached == 40);

  // The same prompt again: everything but the last prompt token comes from the cache.
  auto r3 = std::make_shared<recorder>();
  REQUIRE(e->submit(p2, greedy(16), r3).has_value());
  r3->wait();
  CHECK(r3->info.tokens_cached == int(p2.size()) - 1);
  CHECK(r3->tokens == ref2->tokens);
}
