// GGUF reader: valid files parse; truncated, corrupted and hostile files give errc::bad_file (or
// errc::unsupported for unknown tensor types) with a message naming what is wrong, never a crash.
#include <catch2/catch.hpp>

#include <random>

#include "gguf.h"
#include "gguf_builder.h"

using namespace sluice::engine;
using sluice::engine::test::gguf_builder;

namespace {

result<std::unique_ptr<gguf_file>> parse_bytes(const std::vector<uint8_t>& b) {
  return gguf_file::parse(mapped_file::borrow(std::span<const uint8_t>(b.data(), b.size())));
}

gguf_builder small_valid() {
  gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_u32("llama.block_count", 1);
  g.kv_f32("llama.rope.freq_base", 10000.0f);
  g.kv_bool("tokenizer.ggml.add_bos_token", true);
  g.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  g.kv_i32_array("tokenizer.ggml.token_type", {1, 1, 3});
  g.add_f32_tensor("a.weight", {8, 2});
  g.add_f32_tensor("b.weight", {4});
  return g;
}

}  // namespace

TEST_CASE("gguf: a valid file parses with its metadata and tensors", "[gguf]") {
  auto bytes = small_valid().build();
  auto g = parse_bytes(bytes);
  REQUIRE(g.has_value());
  auto& f = **g;
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture").value() == std::optional<std::string>("llama"));
  CHECK(f.get_uint("llama.block_count").value() == std::optional<uint64_t>(1));
  CHECK(f.get_float("llama.rope.freq_base").value() == std::optional<double>(10000.0));
  CHECK(f.get_bool("tokenizer.ggml.add_bos_token").value() == std::optional<bool>(true));
  auto toks = f.get_string_array("tokenizer.ggml.tokens").value();
  REQUIRE(toks.has_value());
  CHECK(*toks == std::vector<std::string>{"a", "b", "c"});
  CHECK(f.get_int_array("tokenizer.ggml.token_type").value() == std::optional<std::vector<int32_t>>({1, 1, 3}));
  REQUIRE(f.tensor("a.weight"));
  CHECK(f.tensor("a.weight")->ne[0] == 8);
  CHECK(f.tensor("a.weight")->n_bytes == 64);
  CHECK(f.tensor("b.weight")->offset == 64);
  CHECK_FALSE(f.tensor("missing"));
  // Wrong-typed lookups are errors, absent keys are empty.
  CHECK_FALSE(f.get_uint("general.architecture").has_value());
  CHECK_FALSE(f.get_string("llama.block_count").has_value());
  CHECK_FALSE(f.get_uint("nope").value().has_value());
}

TEST_CASE("gguf: the committed tiny models parse", "[gguf]") {
  for (const char* q : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"}) {
    auto f = mapped_file::open(sluice::engine::test::source_dir() + "/test/engine/data/tiny-" + q + ".gguf");
    REQUIRE(f.has_value());
    auto g = gguf_file::parse(std::move(*f));
    INFO(q);
    REQUIRE(g.has_value());
    CHECK((*g)->tensor("token_embd.weight"));
  }
}

TEST_CASE("gguf: every truncation of a valid file is a clean bad_file error", "[gguf]") {
  auto bytes = small_valid().build();
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + long(n));
    auto g = parse_bytes(prefix);
    INFO("prefix length " << n);
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::bad_file);
    CHECK_FALSE(g.error().message.empty());
  }
  // A real model's header region, and a stride through its data.
  auto model = sluice::engine::test::read_file_bytes(sluice::engine::test::source_dir() +
                                                     "/test/engine/data/tiny-q4_1.gguf");
  REQUIRE(model.size() > 10000);
  for (size_t n = 0; n < model.size(); n += (n < 8192 ? 1 : 997)) {
    std::vector<uint8_t> prefix(model.begin(), model.begin() + long(n));
    auto g = parse_bytes(prefix);
    INFO("prefix length " << n);
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::bad_file);
  }
}

TEST_CASE("gguf: random byte flips never crash", "[gguf]") {
  auto bytes = small_valid().build();
  std::mt19937 rng(42);
  int ok = 0, failed = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto b = bytes;
    int flips = 1 + int(rng() % 4);
    for (int i = 0; i < flips; ++i) b[rng() % b.size()] ^= uint8_t(1u << (rng() % 8));
    auto g = parse_bytes(b);
    if (g) {
      ++ok;
      for (auto& t : (*g)->tensors()) {  // whatever parsed must lie inside the buffer
        CHECK(t.data >= b.data());
        CHECK(t.data + t.n_bytes <= b.data() + b.size());
      }
    } else {
      ++failed;
      CHECK((g.error().code == errc::bad_file || g.error().code == errc::unsupported));
    }
  }
  CHECK(failed > 0);
  CHECK(ok + failed == 4000);
}

TEST_CASE("gguf: hostile headers are rejected with a message naming the problem", "[gguf]") {
  SECTION("bad magic") {
    auto b = small_valid().build();
    b[0] = 'X';
    auto g = parse_bytes(b);
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("magic"));
  }
  SECTION("unsupported version") {
    auto gb = small_valid();
    gb.version = 7;
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("version 7"));
  }
  SECTION("huge metadata count") {
    auto gb = small_valid();
    gb.n_kv_override = int64_t(1) << 60;
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("metadata count"));
  }
  SECTION("huge tensor count") {
    auto gb = small_valid();
    gb.n_tensors_override = int64_t(1) << 40;
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("tensor count"));
  }
  SECTION("huge string length") {
    gguf_builder gb;
    std::vector<uint8_t> kv;
    gguf_builder::put<uint64_t>(kv, uint64_t(1) << 62);
    kv.resize(kv.size() + 32, 0);
    gb.kvs.push_back(kv);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("metadata key"));
  }
  SECTION("huge array length") {
    gguf_builder gb;
    std::vector<uint8_t> kv;
    gguf_builder::put_str(kv, "big");
    gguf_builder::put<uint32_t>(kv, 9);
    gguf_builder::put<uint32_t>(kv, 4);
    gguf_builder::put<uint64_t>(kv, uint64_t(1) << 61);
    gb.kvs.push_back(kv);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("'big'"));
  }
  SECTION("unknown value type") {
    gguf_builder gb;
    std::vector<uint8_t> kv;
    gguf_builder::put_str(kv, "odd");
    gguf_builder::put<uint32_t>(kv, 99);
    gb.kvs.push_back(kv);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("'odd'"));
  }
  SECTION("nested arrays") {
    gguf_builder gb;
    std::vector<uint8_t> kv;
    gguf_builder::put_str(kv, "nest");
    gguf_builder::put<uint32_t>(kv, 9);
    gguf_builder::put<uint32_t>(kv, 9);
    gguf_builder::put<uint64_t>(kv, 1);
    gb.kvs.push_back(kv);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("nest"));
  }
  SECTION("duplicate key") {
    auto gb = small_valid();
    gb.kv_u32("llama.block_count", 2);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("duplicate metadata key 'llama.block_count'"));
  }
  SECTION("bad alignment value") {
    auto gb = small_valid();
    gb.kv_u32("general.alignment", 24);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("general.alignment"));
  }
  SECTION("too many dimensions") {
    auto gb = small_valid();
    gb.tensors[0].ne = {2, 2, 2, 1, 1};
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("'a.weight'"));
  }
  SECTION("zero dimension") {
    auto gb = small_valid();
    gb.tensors[0].ne = {8, 0};
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("dimension 1"));
  }
  SECTION("element count overflow") {
    auto gb = small_valid();
    gb.tensors[0].ne = {uint64_t(1) << 40, uint64_t(1) << 40};
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("overflow"));
  }
  SECTION("unknown tensor type id") {
    auto gb = small_valid();
    gb.tensors[0].type = 1000;
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::bad_file);
  }
  SECTION("known but unsupported tensor types and architecture, all in one message") {
    gguf_builder gb;
    gb.kv_str("general.architecture", "mamba");
    gb.add_f32_tensor("a.weight", {8, 2});
    gb.add_f32_tensor("b.weight", {8, 2});
    gb.add_f32_tensor("c.weight", {8, 2});
    gb.tensors[0].type = 11;  // Q3_K
    gb.tensors[0].ne = {256, 1};
    gb.tensors[1].type = 20;  // IQ4_NL
    gb.tensors[1].ne = {32, 1};
    gb.tensors[2].type = 11;
    gb.tensors[2].ne = {256, 1};
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error().code == errc::unsupported);
    CHECK_THAT(g.error().message, Catch::Contains("tensor types Q3_K (2 tensors, e.g. 'a.weight'), IQ4_NL (1 tensor, "
                                                  "e.g. 'b.weight') are not supported"));
    CHECK_THAT(g.error().message,
               Catch::Contains("architecture 'mamba' is not supported either (supported: llama, qwen2, qwen3, gemma3)"));
  }
  SECTION("row length not a multiple of the block") {
    auto gb = small_valid();
    gb.tensors[0].type = 8;  // Q8_0 with 8 elements per row
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("block size"));
  }
  SECTION("misaligned offset") {
    auto gb = small_valid();
    gb.tensors[1].offset = 65;
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("aligned"));
  }
  SECTION("data past the end") {
    auto gb = small_valid();
    gb.tensors[1].offset = 1 << 20;
    auto b = gb.build();
    b.resize(b.size() - 4);  // the builder pads to the offset; cut the tail
    auto g = parse_bytes(b);
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("'b.weight'"));
  }
  SECTION("offset near 2^64") {
    auto gb = small_valid();
    auto b = gb.build();
    gb.tensors[1].offset = ~uint64_t(0) - 31;
    gb.tensors[1].data.clear();
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
  }
  SECTION("overlapping tensors") {
    auto gb = small_valid();
    gb.tensors[1].offset = 32;  // inside a.weight's 64 bytes
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("overlap"));
  }
  SECTION("duplicate tensor name") {
    auto gb = small_valid();
    gb.tensors[1].name = "a.weight";
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("duplicate tensor"));
  }
  SECTION("bool out of range") {
    gguf_builder gb;
    std::vector<uint8_t> kv;
    gguf_builder::put_str(kv, "flag");
    gguf_builder::put<uint32_t>(kv, 7);
    gguf_builder::put<uint8_t>(kv, 5);
    gb.kvs.push_back(kv);
    auto g = parse_bytes(gb.build());
    REQUIRE_FALSE(g.has_value());
    CHECK_THAT(g.error().message, Catch::Contains("'flag'"));
  }
}

TEST_CASE("gguf: files that cannot be opened are io errors", "[gguf]") {
  auto f = mapped_file::open("/nonexistent/model.gguf");
  REQUIRE_FALSE(f.has_value());
  CHECK(f.error().code == errc::io);
  auto d = mapped_file::open("/tmp");
  REQUIRE_FALSE(d.has_value());
  CHECK(d.error().code == errc::io);
}
