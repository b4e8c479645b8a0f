// llama model loading: hyperparameters from metadata, every tensor present with the right shape, clear
// errors naming a missing or misshapen tensor or an unsupported architecture.
#include <catch2/catch.hpp>
#include <cmath>

#include "gguf_builder.h"
#include "llama_model.h"
#include "model_loader.h"

using namespace sluice::engine;
using sluice::engine::test::gguf_builder;

namespace {

// 1-layer llama: n_embd 32, 2 heads, 1 KV head, n_ff 64, vocab 4, all F32.
gguf_builder tiny_llama() {
  gguf_builder g;
  g.kv_str("general.architecture", "llama");
  g.kv_str("general.name", "unit");
  g.kv_u32("llama.block_count", 1);
  g.kv_u32("llama.embedding_length", 32);
  g.kv_u32("llama.feed_forward_length", 64);
  g.kv_u32("llama.attention.head_count", 2);
  g.kv_u32("llama.attention.head_count_kv", 1);
  g.kv_u32("llama.context_length", 128);
  g.kv_f32("llama.rope.freq_base", 10000.0f);
  g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.kv_str("tokenizer.ggml.model", "gpt2");
  g.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c", "d"});
  g.kv_str_array("tokenizer.ggml.merges", {"a b"});
  g.add_f32_tensor("token_embd.weight", {32, 4});
  g.add_f32_tensor("output_norm.weight", {32});
  g.add_f32_tensor("blk.0.attn_norm.weight", {32});
  g.add_f32_tensor("blk.0.attn_q.weight", {32, 32});
  g.add_f32_tensor("blk.0.attn_k.weight", {32, 16});
  g.add_f32_tensor("blk.0.attn_v.weight", {32, 16});
  g.add_f32_tensor("blk.0.attn_output.weight", {32, 32});
  g.add_f32_tensor("blk.0.ffn_norm.weight", {32});
  g.add_f32_tensor("blk.0.ffn_gate.weight", {32, 64});
  g.add_f32_tensor("blk.0.ffn_up.weight", {32, 64});
  g.add_f32_tensor("blk.0.ffn_down.weight", {64, 32});
  return g;
}

// 1-layer gemma3 (the llama shapes plus Q/K norms and post-norms, a sliding window); `drop` leaves out one
// metadata key or tensor by name.
gguf_builder tiny_gemma3(const std::string& drop = "") {
  gguf_builder g;
  auto u32 = [&](const std::string& k, uint32_t v) { if (k != drop) g.kv_u32(k, v); };
  auto tensor = [&](const std::string& n, std::vector<uint64_t> ne) { if (n != drop) g.add_f32_tensor(n, ne); };
  g.kv_str("general.architecture", "gemma3");
  u32("gemma3.block_count", 1);
  u32("gemma3.embedding_length", 32);
  u32("gemma3.feed_forward_length", 64);
  u32("gemma3.attention.head_count", 2);
  u32("gemma3.attention.head_count_kv", 1);
  u32("gemma3.attention.key_length", 32);
  u32("gemma3.attention.value_length", 32);
  u32("gemma3.attention.sliding_window", 8);
  g.kv_str("tokenizer.ggml.model", "gpt2");
  g.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "c", "d"});
  g.kv_str_array("tokenizer.ggml.merges", {"a b"});
  tensor("token_embd.weight", {32, 4});
  tensor("output_norm.weight", {32});
  tensor("blk.0.attn_norm.weight", {32});
  tensor("blk.0.attn_q.weight", {32, 64});
  tensor("blk.0.attn_k.weight", {32, 32});
  tensor("blk.0.attn_v.weight", {32, 32});
  tensor("blk.0.attn_q_norm.weight", {32});
  tensor("blk.0.attn_k_norm.weight", {32});
  tensor("blk.0.attn_output.weight", {64, 32});
  tensor("blk.0.post_attention_norm.weight", {32});
  tensor("blk.0.ffn_norm.weight", {32});
  tensor("blk.0.ffn_gate.weight", {32, 64});
  tensor("blk.0.ffn_up.weight", {32, 64});
  tensor("blk.0.ffn_down.weight", {64, 32});
  tensor("blk.0.post_ffw_norm.weight", {32});
  return g;
}

result<std::unique_ptr<llama_model>> load_bytes(const std::vector<uint8_t>& b) {
  auto g = gguf_file::parse(mapped_file::borrow(std::span<const uint8_t>(b.data(), b.size())));
  if (!g) return g.error();
  return load_llama_model(std::move(*g));
}

}  // namespace

TEST_CASE("llama: hyperparameters and tied output from a valid file", "[llama_model]") {
  auto b = tiny_llama().build();
  auto m = load_bytes(b);
  REQUIRE(m.has_value());
  const auto& hp = (*m)->hp;
  CHECK(hp.n_embd == 32);
  CHECK(hp.n_head == 2);
  CHECK(hp.n_head_kv == 1);
  CHECK(hp.head_dim == 16);
  CHECK(hp.n_rot == 16);
  CHECK(hp.n_vocab == 4);
  CHECK(hp.n_ctx_train == 128);
  CHECK((*m)->output.data == (*m)->tok_embd.data);  // tied
  CHECK((*m)->layers.size() == 1);
  CHECK((*m)->layers[0].wk.rows == 16);
}

TEST_CASE("llama: errors name the missing or misshapen tensor", "[llama_model]") {
  SECTION("missing tensor") {
    auto g = tiny_llama();
    g.tensors.erase(g.tensors.begin() + 6);  // blk.0.attn_output.weight
    auto m = load_bytes(g.build());
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().code == errc::bad_file);
    CHECK_THAT(m.error().message, Catch::Contains("blk.0.attn_output.weight"));
  }
  SECTION("wrong shape") {
    auto g = tiny_llama();
    g.tensors[4].ne = {32, 32};  // attn_k should be [32, 16]
    g.tensors[4].data.resize(32 * 32 * 4);
    for (size_t i = 5; i < g.tensors.size(); ++i) g.tensors[i].offset += 32 * 16 * 4;
    auto m = load_bytes(g.build());
    REQUIRE_FALSE(m.has_value());
    CHECK_THAT(m.error().message, Catch::Contains("blk.0.attn_k.weight"));
    CHECK_THAT(m.error().message, Catch::Contains("[32, 16]"));
  }
  SECTION("other architecture") {
    auto g = tiny_llama();
    g.kvs[0].clear();
    gguf_builder::put_str(g.kvs[0], "general.architecture");
    gguf_builder::put<uint32_t>(g.kvs[0], 8);
    gguf_builder::put_str(g.kvs[0], "mamba");
    auto m = load_bytes(g.build());
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().code == errc::unsupported);
    CHECK_THAT(m.error().message, Catch::Contains("mamba"));
  }
  SECTION("missing hyperparameter") {
    auto g = tiny_llama();
    g.kvs.erase(g.kvs.begin() + 3);  // llama.embedding_length
    auto m = load_bytes(g.build());
    REQUIRE_FALSE(m.has_value());
    CHECK_THAT(m.error().message, Catch::Contains("llama.embedding_length"));
  }
  SECTION("heads do not divide") {
    auto g = tiny_llama();
    g.kv_u32("llama.attention.head_count", 3);
    g.kvs.erase(g.kvs.begin() + 5);  // the original head_count
    auto m = load_bytes(g.build());
    REQUIRE_FALSE(m.has_value());
    CHECK(m.error().code == errc::bad_file);
  }
}

TEST_CASE("llama: the committed tiny models load, tied and untied", "[llama_model]") {
  for (const char* q : {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"}) {
    auto lm = load_model_file(sluice::engine::test::source_dir() + "/test/engine/data/tiny-" + q + ".gguf");
    INFO(q);
    REQUIRE(lm.has_value());
    CHECK(lm->model->hp.n_layer == 2);
    CHECK(lm->model->hp.n_head_kv == 2);
    CHECK(lm->tok.tokens.size() == size_t(lm->model->hp.n_vocab));
  }
  auto missing = load_model_file("/nonexistent.gguf");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().code == errc::io);
}

TEST_CASE("llama: qwen2 and qwen3 files load their extras (biases, per-head Q/K norms, NEOX RoPE)", "[llama_model]") {
  auto q2 = load_model_file(sluice::engine::test::source_dir() + "/test/engine/data/tiny-qwen2.gguf");
  REQUIRE(q2.has_value());
  CHECK(q2->model->arch == "qwen2");
  CHECK(q2->model->hp.rope_neox);
  const llama_layer& l2 = q2->model->layers[0];
  CHECK(l2.bq.size() == size_t(q2->model->hp.q_dim()));
  CHECK(l2.bk.size() == size_t(q2->model->hp.kv_dim()));
  CHECK(l2.bv.size() == size_t(q2->model->hp.kv_dim()));
  CHECK(l2.q_norm.empty());
  auto q3 = load_model_file(sluice::engine::test::source_dir() + "/test/engine/data/tiny-qwen3.gguf");
  REQUIRE(q3.has_value());
  CHECK(q3->model->arch == "qwen3");
  const llama_layer& l3 = q3->model->layers[0];
  CHECK(l3.q_norm.size() == size_t(q3->model->hp.head_dim));
  CHECK(l3.k_norm.size() == size_t(q3->model->hp.head_dim));
  CHECK(l3.bq.empty());
  auto llama = load_model_file(sluice::engine::test::source_dir() + "/test/engine/data/tiny-q8_0.gguf");
  REQUIRE(llama.has_value());
  CHECK_FALSE(llama->model->hp.rope_neox);
}

TEST_CASE("llama: gemma3 files read their window, post-norms and scales; what is missing is named", "[llama_model]") {
  auto m = load_bytes(tiny_gemma3().build());
  REQUIRE(m.has_value());
  const llama_hparams& hp = (*m)->hp;
  CHECK(hp.head_dim == 32);  // key_length, not n_embd / n_head (16)
  CHECK(hp.q_dim() == 64);
  CHECK(hp.n_swa == 8);
  CHECK(hp.rope_freq_base_swa == 10000.0f);
  CHECK(hp.ffn == ffn_kind::geglu);
  CHECK(hp.post_norms);
  CHECK(hp.rope_neox);
  CHECK(hp.embd_scale == Approx(std::sqrt(32.0f)));
  CHECK(hp.attn_scale == Approx(1.0f / std::sqrt(32.0f)));
  CHECK((*m)->layers[0].sliding);
  CHECK((*m)->layers[0].ffn_post_norm.size() == 32);
  for (const char* drop : {"gemma3.attention.sliding_window", "blk.0.post_ffw_norm.weight",
                           "blk.0.attn_q_norm.weight"}) {
    auto bad = load_bytes(tiny_gemma3(drop).build());
    INFO(drop);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == errc::bad_file);
    CHECK_THAT(bad.error().message, Catch::Contains(drop));
  }
  // The committed tiny model: five sliding layers, then a global one.
  auto tiny = load_model_file(sluice::engine::test::source_dir() + "/test/engine/data/tiny-gemma3.gguf");
  REQUIRE(tiny.has_value());
  for (int il = 0; il < 6; ++il) CHECK(tiny->model->layers[size_t(il)].sliding == (il != 5));
}
