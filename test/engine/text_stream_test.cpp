// Tests for text_stream: stop sequences across token boundaries (never emitted, text cut before them),
// UTF-8 characters split across tokens, held-back prefixes released when they turn out not to be stops.
#include "text_stream.h"

#include <catch2/catch.hpp>
#include <random>

#include "tokenizer_golden.h"
#include "unicode.h"

using namespace sluice::engine;

namespace {

// GPT-2 byte-level encoding of raw bytes (as stored in GGUF vocabularies), written independently here.
std::string byte_encode(std::string_view raw) {
  std::string out;
  for (unsigned char b : raw) {
    char32_t cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
      int n = 0;
      for (int x = 0; x < b; ++x) {
        if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
      }
      cp = 256 + n;
    }
    append_utf8(out, cp);
  }
  return out;
}

// Raw token texts of the test vocabulary; ids are positions.
const std::vector<std::string> raw_tokens = {
    "<|im_end|>", "Hello", " wor",         "ld", "<",  "|", "end",  "|>",   "\xF0\x9F", "\x98\x80",
    "!",          "\xF0",  "\x9F\x98\x80", "ST", "OP", "S", "\xC3", "\xA9", " ",        "\n"};

const tokenizer& vocab() {
  static std::unique_ptr<tokenizer> tok = [] {
    tokenizer_data d;
    d.model = "gpt2";
    for (std::size_t i = 0; i < raw_tokens.size(); ++i) {
      d.tokens.push_back(i == 0 ? raw_tokens[i] : byte_encode(raw_tokens[i]));
      d.token_types.push_back(i == 0 ? 3 : 1);
    }
    d.eos_id = 0;
    auto r = tokenizer::create(d);
    REQUIRE(r.has_value());
    return std::move(*r);
  }();
  return *tok;
}

struct run_result {
  std::vector<std::string> chunks;
  std::string text;
  bool stopped = false;
};

run_result run(const std::vector<token_id>& ids, std::vector<std::string> stop) {
  text_stream ts(vocab(), std::move(stop));
  run_result r;
  for (token_id id : ids) {
    text_stream::step st = ts.push(id);
    r.chunks.push_back(st.text);
    r.text += st.text;
    if (st.stopped) {
      r.stopped = true;
      return r;
    }
  }
  r.chunks.push_back(ts.flush());
  r.text += r.chunks.back();
  return r;
}

}  // namespace

TEST_CASE("a stop sequence spread over three tokens is cut and never emitted", "[text_stream]") {
  run_result r = run({1, 2, 4, 5, 6, 7, 10}, {"<|end|>"});
  CHECK(r.stopped);
  CHECK(r.text == "Hello wor");
  CHECK(r.chunks == std::vector<std::string>{"Hello", " wor", "", "", "", ""});
}

TEST_CASE("a held-back prefix is released when it is not a stop", "[text_stream]") {
  run_result r = run({1, 4, 5, 3, 10}, {"<|end|>"});
  CHECK_FALSE(r.stopped);
  CHECK(r.text == "Hello<|ld!");
  CHECK(r.chunks[1].empty());
  CHECK(r.chunks[2].empty());
  CHECK(r.chunks[3] == "<|ld");
}

TEST_CASE("text before a stop inside one token is emitted; the rest is dropped", "[text_stream]") {
  run_result r = run({1, 13, 14, 10}, {"lloS"});  // "Hello" + "ST": "lloS" spans tokens 1 and 13
  CHECK(r.stopped);
  CHECK(r.text == "He");
  run_result r2 = run({1, 10, 1}, {"!"});
  CHECK(r2.stopped);
  CHECK(r2.text == "Hello");
}

TEST_CASE("the earliest of several stop sequences wins", "[text_stream]") {
  run_result r = run({1, 13, 14, 4, 5}, {"<|", "STOP", "OP"});
  CHECK(r.stopped);
  CHECK(r.text == "Hello");
}

TEST_CASE("an emoji split across tokens is emitted whole", "[text_stream]") {
  run_result r = run({1, 8, 9, 10}, {});
  CHECK(r.chunks == std::vector<std::string>{"Hello", "", "\xF0\x9F\x98\x80", "!", ""});
  run_result r2 = run({11, 12}, {});
  CHECK(r2.chunks[0].empty());
  CHECK(r2.chunks[1] == "\xF0\x9F\x98\x80");
  run_result r3 = run({16, 17}, {"\xC3\xA9!"});  // "é" then end: held as a stop prefix, released by flush
  CHECK_FALSE(r3.stopped);
  CHECK(r3.text == "\xC3\xA9");
  CHECK(r3.chunks.back() == "\xC3\xA9");
}

TEST_CASE("control tokens add no text; a dangling partial character becomes U+FFFD", "[text_stream]") {
  CHECK(run({1, 0, 10}, {}).text == "Hello!");
  CHECK(run({1, 8}, {}).text == "Hello\xEF\xBF\xBD");
  CHECK(run({8, 10}, {}).text == "\xEF\xBF\xBD!");
}

TEST_CASE("random token streams: output equals the text cut at the first stop, in valid UTF-8", "[text_stream]") {
  std::mt19937 rng(12345);
  const std::vector<std::vector<std::string>> stop_sets = {
      {}, {"<|end|>"}, {"ld!", "\n\n"}, {"\xF0\x9F\x98\x80"}, {"S", "|"}};
  for (int iter = 0; iter < 500; ++iter) {
    std::vector<token_id> ids;
    std::string full;
    int n = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      // Only tokens whose concatenation stays valid UTF-8 (complete characters) so the expectation is exact.
      static const token_id safe[] = {1, 2, 3, 4, 5, 6, 7, 10, 13, 14, 15, 18, 19};
      token_id id = safe[rng() % std::size(safe)];
      if (rng() % 6 == 0) {  // sometimes an emoji split in two tokens, at either of two places
        const bool late = rng() % 2 == 0;
        ids.push_back(late ? 8 : 11);
        full += raw_tokens[ids.back()];
        id = late ? 9 : 12;
      }
      ids.push_back(id);
      full += raw_tokens[id];
    }
    const std::vector<std::string>& stops = stop_sets[iter % stop_sets.size()];
    std::size_t cut = std::string::npos;
    for (const std::string& s : stops) cut = std::min(cut, full.find(s));
    run_result r = run(ids, stops);
    INFO("full: " << full);
    CHECK(r.stopped == (cut != std::string::npos));
    CHECK(r.text == full.substr(0, cut));
    for (const std::string& c : r.chunks) {
      CHECK(sanitize_utf8(c) == c);
      for (const std::string& s : stops) CHECK(c.find(s) == std::string::npos);
    }
  }
}

TEST_CASE("streaming the golden corpus through SmolLM2's vocabulary reproduces the text", "[text_stream]") {
  auto created = tokenizer::create(test::load_tokenizer_data("tokenizer_smollm2.json"));
  REQUIRE(created.has_value());
  const tokenizer& tok = **created;
  int checked = 0;
  for (const test::token_case& c : test::load_token_cases("tokens_smollm2.json")) {
    if (c.special || c.text.empty() || sanitize_utf8(c.text) != c.text) continue;
    // A stop string taken from the middle of the text: output must end right before its first occurrence.
    const std::size_t mid = c.text.size() / 2;
    std::size_t len = std::min<std::size_t>(3, c.text.size() - mid);
    while (mid + len < c.text.size() && incomplete_utf8_tail(c.text.substr(mid, len)) != 0) ++len;
    const bool at_boundary = utf8_sequence_length(static_cast<unsigned char>(c.text[mid])) != 0;
    for (bool with_stop : {false, true}) {
      if (with_stop && !at_boundary) continue;
      const std::string stop = c.text.substr(mid, len);
      text_stream ts(tok, with_stop ? std::vector<std::string>{stop} : std::vector<std::string>{});
      std::string out;
      bool stopped = false;
      for (token_id id : c.ids) {
        text_stream::step st = ts.push(id);
        CHECK(sanitize_utf8(st.text) == st.text);
        out += st.text;
        if ((stopped = st.stopped)) break;
      }
      if (!stopped) out += ts.flush();
      INFO("text: " << c.text.substr(0, 120) << " stop: " << (with_stop ? stop : "(none)"));
      CHECK(stopped == with_stop);
      CHECK(out == (with_stop ? c.text.substr(0, c.text.find(stop)) : c.text));
      ++checked;
    }
  }
  CHECK(checked > 150);
}
