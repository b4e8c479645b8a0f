// The CUDA backend's host-side logic, which runs everywhere: batch flattening, memory planning, launch shapes
// and the device choice, and what loading with device cuda / auto does on this machine.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_plan.h"
#include "gguf_builder.h"
#include "model_loader.h"
#include "sluice/engine/engine.h"

using namespace sluice::engine;

TEST_CASE("cuda plan: a batch flattens into per-token arrays, block tables and logits rows", "[cuda]") {
  const std::vector<kv_block_id> t0{4, 7}, t1{2};
  const std::vector<token_id> a{10, 11, 12}, b{20};
  std::vector<batch_seq> batch(2);
  batch[0].blocks = t0, batch[0].tokens = a, batch[0].pos0 = 16, batch[0].want = batch_seq::logits::all;
  batch[1].blocks = t1, batch[1].tokens = b, batch[1].pos0 = 5, batch[1].want = batch_seq::logits::last;
  const cuda::flat_batch f = cuda::flatten(batch, 16, 8);
  CHECK(f.tokens == std::vector<int32_t>{10, 11, 12, 20});
  CHECK(f.positions == std::vector<int32_t>{16, 17, 18, 5});
  CHECK(f.seq_of_token == std::vector<int32_t>{0, 0, 0, 1});
  CHECK(f.table_offset == std::vector<int32_t>{0, 2});
  CHECK(f.blocks == std::vector<kv_block_id>{4, 7, 2});
  CHECK(f.logits_tokens == std::vector<int32_t>{0, 1, 2, 3});
  CHECK(f.max_positions == 19);
  batch[0].want = batch_seq::logits::none;
  CHECK(cuda::flatten(batch, 16, 8).logits_tokens == std::vector<int32_t>{3});

  batch[0].pos0 = 30;  // positions 30..32 need 3 blocks of 16; the table has 2
  CHECK_THROWS_WITH(cuda::flatten(batch, 16, 8), Catch::Contains("covers 32 positions, 33 needed"));
  batch[0].pos0 = 16;
  CHECK_THROWS_WITH(cuda::flatten(batch, 16, 7), Catch::Contains("block 7 is outside the pool of 7"));
}

TEST_CASE("cuda plan: memory per model, per KV block and per token; launch shapes", "[cuda]") {
  auto lm = load_model_file(sluice::engine::test::source_dir() + "/test/engine/data/tiny-q4_1.gguf");
  REQUIRE(lm.has_value());
  const llama_hparams& hp = lm->model->hp;
  const cuda::memory_plan p = cuda::plan_memory(*lm->model, 16);
  CHECK(p.kv_block == size_t(hp.n_layer) * 2 * 16 * size_t(hp.kv_dim()) * 2);
  size_t weights = size_t(lm->model->tok_embd.rows) * lm->model->tok_embd.row_bytes;  // tied output
  for (const llama_layer& l : lm->model->layers)
    for (const weight* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      weights += size_t(w->rows) * w->row_bytes;
  CHECK(p.weights >= weights);
  CHECK(p.weights < weights + size_t(hp.n_embd) * 4 * (2 * size_t(hp.n_layer) + 1) + 4096);
  CHECK(p.scratch(4, 100, hp.n_head) == 4 * p.scratch_per_token + 4 * size_t(hp.n_head) * 100 * 4);

  const cuda::launch_shape mv = cuda::matvec_shape(100, 3);
  CHECK(mv.grid_x == 13);  // 8 rows per block of 256 threads
  CHECK(mv.grid_y == 3);
  CHECK(mv.block == 256);
  const cuda::launch_shape at = cuda::attention_shape(5, 9);
  CHECK(at.grid_x == 5);
  CHECK(at.grid_y == 9);
}

TEST_CASE("cuda plan: the device choice", "[cuda]") {
  CHECK_FALSE(cuda::choose_device("cpu", "no CUDA device").use_cuda);
  CHECK(cuda::choose_device("cuda", "").use_cuda);
  CHECK(cuda::choose_device("cuda", "no CUDA device").error == "device cuda was asked for, but no CUDA device");
  const auto fallback = cuda::choose_device("auto", "no CUDA device");
  CHECK_FALSE(fallback.use_cuda);
  CHECK(fallback.error.empty());
  CHECK(fallback.note == "device auto: running on the CPU (no CUDA device)");
  CHECK(cuda::choose_device("auto", "").use_cuda);
  CHECK(cuda::choose_device("tpu", "").error == "device must be cpu, cuda or auto, got 'tpu'");
}

TEST_CASE("engine: device cuda is refused clearly where there is no GPU; auto runs on the CPU", "[cuda][engine]") {
  load_options lo;
  lo.path = sluice::engine::test::source_dir() + "/test/engine/data/tiny-q4_1.gguf";
  lo.threads = 1;
  lo.max_sequences = 1;
  lo.kv_cache_bytes = 8u << 20;
  const std::string why = cuda::why_not_available();
  INFO("CUDA here: " << (why.empty() ? "available" : why));
  lo.device = "auto";
  auto a = engine::load(lo);
  REQUIRE(a.has_value());
  CHECK((*a)->info().device == (why.empty() ? "cuda" : "cpu"));
  if (!why.empty()) CHECK((*a)->info().device_note == "device auto: running on the CPU (" + why + ")");
  lo.device = "cuda";
  auto c = engine::load(lo);
  if (why.empty()) {
    REQUIRE(c.has_value());
    CHECK((*c)->info().device == "cuda");
  } else {
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error().message == "device cuda was asked for, but " + why);
  }
  lo.device = "gpu";
  auto bad = engine::load(lo);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message == "device must be cpu, cuda or auto, got 'gpu'");
}
