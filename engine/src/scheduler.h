// Continuous batching: a scheduler thread owns all sequences; each step it takes one decode token from
// every running sequence plus prefill chunks from new ones (up to a token budget, so that running streams
// keep flowing while a long prompt is prefilled), runs them through the backend in one pass (one weight
// read for all), samples, and reports tokens to each sequence's observer from this thread.
// It also owns the KV block bookkeeping: each sequence gets a block table at admission (its shared prefix
// from the radix cache, private blocks for the rest); full blocks go into the radix cache after every
// prefill chunk and at the end, so later and concurrent sequences with the same prefix read them.
// What must not go in here: model math (backend), text rules (text_stream), sampling rules (sampler), the
// tree itself (radix_cache).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "backend.h"
#include "radix_cache.h"
#include "tokenizer.h"

namespace sluice::engine {

struct scheduler_options {
  int max_sequences = 8;       // decoded together
  int max_queued = 256;        // waiting beyond this -> errc::overloaded
  // Tokens per step while any sequence is decoding, its decode tokens included (they always go; prefill
  // gets the rest, at least one KV block): bounds the gap between a running stream's tokens.
  int step_token_budget = 32;
  int prefill_chunk_tokens = 512;  // prefill tokens per step while nothing is decoding
  int context_tokens = 2048;   // per sequence
  size_t kv_cache_bytes = 256u << 20;  // the KV block pool: running sequences and the prefix cache share it
  bool prefix_cache = true;    // false: every sequence computes its whole prompt (blocks are still pooled)
};

class scheduler {
 public:
  scheduler(backend& be, const tokenizer& tok, scheduler_options opts);
  ~scheduler();  // finishes every sequence as cancelled and joins the thread

  result<sequence_id> submit(std::vector<token_id> prompt, const sampling_params& params,
                             std::shared_ptr<sequence_observer> observer);
  void cancel(sequence_id id);
  stats get_stats() const;

  struct sequence;

 private:
  void loop();
  void step(std::vector<std::unique_ptr<sequence>>& active);
  void finish(sequence& s, finish_reason r, std::string message = {});
  bool start(sequence& s);
  void catch_up(sequence& s);
  void cache_progress(sequence& s);
  void release_blocks(sequence& s);
  void publish_stats(const std::vector<std::unique_ptr<sequence>>& active);
  void publish_kv_stats_locked();

  backend& be_;
  const tokenizer& tok_;
  scheduler_options opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<sequence>> queued_;
  std::unordered_set<sequence_id> cancels_;
  std::unordered_set<sequence_id> live_;  // queued or active ids (cancel of unknown ids is ignored)
  bool stopping_ = false;
  sequence_id next_id_ = 1;
  stats stats_;  // guarded by mu_
  std::vector<float> logits_;
  int block_tokens_;
  int total_blocks_;
  block_allocator blocks_;  // scheduler thread only (after construction)
  radix_cache radix_;       // scheduler thread only
  std::thread thread_;
};

}  // namespace sluice::engine
