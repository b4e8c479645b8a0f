// Tests for the byte-level BPE tokenizer: token-for-token parity with llama.cpp on recorded goldens
// (SmolLM2's "smollm" pre-tokenizer and a tiny "llama-bpe" vocab), round trips, special-token rules, speed.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>

#include "gguf_builder.h"
#include "model_loader.h"
#include "tokenizer_golden.h"
#include "unicode.h"

using namespace sluice::engine;
using namespace sluice::engine::test;

namespace {

// Speed bounds are checked only in optimised builds without sanitizers (they still print their numbers).
#if defined(NDEBUG) && !defined(__SANITIZE_ADDRESS__)
constexpr bool timing_checks_enabled = true;
#else
constexpr bool timing_checks_enabled = false;
#endif

const tokenizer& smollm2() {
  static std::unique_ptr<tokenizer> tok = [] {
    auto r = tokenizer::create(load_tokenizer_data("tokenizer_smollm2.json"));
    REQUIRE(r.has_value());
    return std::move(*r);
  }();
  return *tok;
}

const tokenizer& llama3_tiny() {
  static std::unique_ptr<tokenizer> tok = [] {
    auto r = tokenizer::create(load_tokenizer_data("tokenizer_llama3_tiny.json"));
    REQUIRE(r.has_value());
    return std::move(*r);
  }();
  return *tok;
}

std::string show(const std::vector<token_id>& ids) {
  std::string s;
  for (token_id id : ids) s += std::to_string(id) + " ";
  return s;
}

void check_golden(const tokenizer& tok, const std::string& file) {
  std::vector<token_case> cases = load_token_cases(file);
  REQUIRE(cases.size() > 100);
  int mismatches = 0;
  for (const token_case& c : cases) {
    std::vector<token_id> got = tok.encode(c.text, false, c.special);
    if (got != c.ids) {
      ++mismatches;
      UNSCOPED_INFO("text: \"" << c.text.substr(0, 200) << "\" special=" << c.special << "\n  want: " << show(c.ids)
                               << "\n  got:  " << show(got));
    }
  }
  CHECK(mismatches == 0);
}

}  // namespace

TEST_CASE("smollm2 tokenization matches llama.cpp on the golden corpus", "[tokenizer]") {
  check_golden(smollm2(), "tokens_smollm2.json");
}

TEST_CASE("llama-bpe tokenization matches llama.cpp on a tiny vocab", "[tokenizer]") {
  check_golden(llama3_tiny(), "tokens_llama3_tiny.json");
  // The tiny vocab has whole-word tokens that no merge sequence reaches: Llama 3 emits them whole.
  std::vector<token_id> ids = llama3_tiny().encode(" gateway", false, false);
  REQUIRE(ids.size() == 1);
  CHECK(llama3_tiny().token_bytes(ids[0]) == " gateway");
  CHECK(llama3_tiny().data().add_bos);  // forced for the Llama 3 family, as llama.cpp does
}

TEST_CASE("SentencePiece (model llama) tokenization matches llama.cpp on a tiny vocab", "[tokenizer]") {
  auto r = tokenizer::create(load_tokenizer_data("tokenizer_spm_tiny.json"));
  REQUIRE(r.has_value());
  const tokenizer& spm = **r;
  check_golden(spm, "tokens_spm_tiny.json");
  // Spaces come back from "▁", bytes from <0xXX> tokens, and the dummy prefix is one leading space.
  const std::string text = "Hello world \xE4\xBD\xA0\xE5\xA5\xBD";
  CHECK(spm.decode(spm.encode(text, false, false)) == " " + text);
  const auto with_bos = spm.encode("Hello", true, false);
  REQUIRE_FALSE(with_bos.empty());
  CHECK(with_bos.front() == spm.bos());
  tokenizer_data bad = load_tokenizer_data("tokenizer_spm_tiny.json");
  bad.scores.pop_back();
  auto refused = tokenizer::create(bad);
  REQUIRE_FALSE(refused.has_value());
  CHECK_THAT(refused.error().message, Catch::Contains("tokenizer.ggml.scores"));
}

TEST_CASE("Gemma 3's SentencePiece vocabulary matches llama.cpp", "[tokenizer][gemma]") {
  // 262144 pieces, no dummy prefix, user-defined pieces for whitespace runs and HTML tags; the model comes from
  // scripts/setup.sh --with-gemma (the README's test command runs it): missing is a failure.
  const std::string path = source_dir() + "/models/gemma-3-270m-q4_k_m.gguf";
  INFO("Gemma model " << path << " not found: run scripts/setup.sh --with-gemma");
  auto lm = load_model_file(path);
  REQUIRE(lm.has_value());
  auto r = tokenizer::create(std::move(lm->tok));
  REQUIRE(r.has_value());
  const tokenizer& gemma = **r;
  CHECK_FALSE(gemma.data().add_space_prefix);
  check_golden(gemma, "tokens_gemma3.json");
  // The turn markers are control tokens that end generation where they close a turn.
  const auto turn = gemma.encode("<start_of_turn>model\nHi<end_of_turn>", false, true);
  REQUIRE(turn.size() >= 3);
  CHECK(gemma.is_control(turn.front()));
  CHECK(gemma.is_end_of_generation(turn.back()));
}

TEST_CASE("qwen2, gpt-2 and default pre-tokenizers match llama.cpp on the tiny vocab", "[tokenizer]") {
  for (const char* pre : {"qwen2", "gpt2", "default"}) {
    tokenizer_data d = load_tokenizer_data("tokenizer_llama3_tiny.json");
    d.pre = pre == std::string("gpt2") ? "gpt-2" : pre;
    auto tok = tokenizer::create(d);
    REQUIRE(tok.has_value());
    INFO("pre = " << d.pre);
    check_golden(**tok, std::string("tokens_") + pre + "_tiny.json");
  }
}

TEST_CASE("decode inverts encode for valid UTF-8", "[tokenizer]") {
  for (const token_case& c : load_token_cases("tokens_smollm2.json")) {
    if (c.special || sanitize_utf8(c.text) != c.text) continue;
    CHECK(smollm2().decode(smollm2().encode(c.text, false, false)) == c.text);
  }
}

TEST_CASE("random bytes: encode never fails and decode gives back the leniently decoded text", "[tokenizer]") {
  std::mt19937 rng(99);
  const tokenizer& tok = smollm2();
  std::vector<bool> has_byte_token(256, false);
  for (token_id id = 0; id < tok.n_vocab(); ++id) {
    if (!tok.is_control(id) && tok.token_bytes(id).size() == 1) {
      has_byte_token[static_cast<unsigned char>(tok.token_bytes(id)[0])] = true;
    }
  }
  for (int iter = 0; iter < 300; ++iter) {
    std::string text(rng() % 64, '\0');
    for (char& c : text) c = static_cast<char>(rng() % 256);
    std::string lenient;  // what the tokenizer sees: malformed bytes become U+FFFD
    for (std::size_t pos = 0; pos < text.size();) append_utf8(lenient, decode_utf8(text, pos));
    // SmolLM2's vocabulary lacks a few bytes (0x14, 0x1d, 0xf1, ...); like llama.cpp, BPE drops them.
    std::erase_if(lenient, [&](char c) { return !has_byte_token[static_cast<unsigned char>(c)]; });
    std::vector<token_id> ids = tok.encode(text, false, iter % 2 == 0);
    for (token_id id : ids) REQUIRE((id >= 0 && id < tok.n_vocab()));
    CHECK(tok.decode(ids) == lenient);
  }
}

TEST_CASE("encode is thread-safe", "[tokenizer]") {
  const tokenizer& tok = smollm2();
  std::vector<token_case> cases = load_token_cases("tokens_smollm2.json");
  std::vector<int> bad(2, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 3; ++rep) {
        for (const token_case& c : cases) bad[t] += tok.encode(c.text, false, c.special) != c.ids;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  CHECK(bad == std::vector<int>{0, 0});
}

TEST_CASE("SmolLM2 has a token for every byte except a few control characters", "[tokenizer]") {
  int missing = 0;
  for (int b = 0; b < 256; ++b) {
    if (smollm2().encode(std::string(1, static_cast<char>(b)), false, false).empty()) ++missing;
  }
  CHECK(missing == 6);  // 0x04 0x06 0x13 0x14 0x16 0x1d (the others lack only invalid-UTF-8 lead bytes)
  CHECK(smollm2().encode("\x14", false, false).empty());
}

TEST_CASE("special tokens come only from parse_special", "[tokenizer]") {
  const tokenizer& tok = smollm2();
  const std::string text = "<|im_start|>user\nhi<|im_end|><|endoftext|>";
  for (token_id id : tok.encode(text, false, false)) {
    CHECK(tok.data().token_types[id] == 1);
  }
  std::vector<token_id> sp = tok.encode(text, false, true);
  REQUIRE(sp.size() >= 4);
  CHECK(sp.front() == 1);         // <|im_start|>
  CHECK(sp[sp.size() - 2] == 2);  // <|im_end|>
  CHECK(sp.back() == 0);          // <|endoftext|>
  CHECK(tok.encode("hi", true, false).front() == tok.bos());
  CHECK(tok.is_end_of_generation(2));
  CHECK(tok.is_end_of_generation(0));
  CHECK_FALSE(tok.is_end_of_generation(1));
  CHECK(tok.is_control(1));
  CHECK(tok.token_bytes(1) == "<|im_start|>");
  CHECK(tok.token_bytes(-1).empty());
  CHECK(tok.token_bytes(tok.n_vocab()).empty());
  CHECK(tok.n_vocab() == 49152);
}

TEST_CASE("token_bytes are raw bytes, possibly partial characters", "[tokenizer]") {
  const tokenizer& tok = smollm2();
  std::vector<token_id> ids = tok.encode("\xF0\x9F\xA6\x80", false, false);  // one emoji, U+1F980
  std::string joined;
  for (token_id id : ids) joined += tok.token_bytes(id);
  CHECK(joined == "\xF0\x9F\xA6\x80");
  std::vector<token_id> nl = tok.encode("\n", false, false);
  REQUIRE(nl.size() == 1);
  CHECK(tok.token_bytes(nl[0]) == "\n");
}

TEST_CASE("tokenizer rejects what it cannot tokenize", "[tokenizer]") {
  tokenizer_data d = load_tokenizer_data("tokenizer_llama3_tiny.json");
  tokenizer_data unknown = d;
  unknown.model = "rwkv";
  auto r1 = tokenizer::create(unknown);
  REQUIRE_FALSE(r1.has_value());
  CHECK(r1.error().code == errc::unsupported);
  tokenizer_data no_scores = d;  // a SentencePiece vocabulary needs its scores
  no_scores.model = "llama";
  auto r0 = tokenizer::create(no_scores);
  REQUIRE_FALSE(r0.has_value());
  CHECK(r0.error().code == errc::bad_file);
  tokenizer_data pre = d;
  pre.pre = "no-such-pre";
  auto r2 = tokenizer::create(pre);
  REQUIRE_FALSE(r2.has_value());
  CHECK(r2.error().code == errc::unsupported);
  CHECK(r2.error().message.find("no-such-pre") != std::string::npos);
  tokenizer_data types = d;
  types.token_types.pop_back();
  auto r3 = tokenizer::create(types);
  REQUIRE_FALSE(r3.has_value());
  CHECK(r3.error().code == errc::bad_file);
  tokenizer_data bad_id = d;
  bad_id.bos_id = static_cast<int32_t>(d.tokens.size());
  CHECK_FALSE(tokenizer::create(bad_id).has_value());
}

TEST_CASE("encode is fast on a few KB of mixed text", "[tokenizer]") {
  std::string text;
  for (const token_case& c : load_token_cases("tokens_smollm2.json")) {
    if (!c.special) text += c.text;
    if (text.size() > 16 * 1024) break;
  }
  const tokenizer& tok = smollm2();
  std::size_t n_tokens = tok.encode(text, false, false).size();  // warm up
  const int reps = 5;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) n_tokens = tok.encode(text, false, false).size();
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps;
  double us_per_kb = us / (text.size() / 1024.0);
  std::printf("tokenizer: %zu bytes -> %zu tokens in %.0f us (%.1f us/KB)\n", text.size(), n_tokens, us, us_per_kb);
  if (timing_checks_enabled) CHECK(us_per_kb < 1000.0);  // generous bound; typical is 50-150 us/KB
}

TEST_CASE("tokenizer from the real SmolLM2 GGUF matches the dump and the goldens", "[tokenizer][model]") {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) {
    WARN("skipped: " << path << " not present (scripts/setup.sh downloads it)");
    return;
  }
  auto lm = load_model_file(path);
  REQUIRE(lm.has_value());
  const tokenizer_data dump = load_tokenizer_data("tokenizer_smollm2.json");
  const tokenizer_data& d = lm->tok;
  CHECK(d.model == dump.model);
  CHECK(d.pre == dump.pre);
  CHECK(d.tokens == dump.tokens);
  CHECK(d.token_types == dump.token_types);
  CHECK(d.merges == dump.merges);
  CHECK(d.bos_id == dump.bos_id);
  CHECK(d.eos_id == dump.eos_id);
  CHECK(d.chat_template == dump.chat_template);
  auto tok = tokenizer::create(lm->tok);
  REQUIRE(tok.has_value());
  check_golden(**tok, "tokens_smollm2.json");
}
