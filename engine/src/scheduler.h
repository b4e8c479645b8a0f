// Continuous batching: a scheduler thread owns all sequences; each step it takes one decode token from
// every running sequence plus prefill chunks from new ones (up to a token budget), runs them through the
// backend in one pass (one weight read for all), samples, and reports tokens to each sequence's observer
// from this thread. What must not go in here: model math (backend), text rules (text_stream), sampling
// rules (sampler).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "backend.h"
#include "prefix_cache.h"
#include "tokenizer.h"

namespace sluice::engine {

struct scheduler_options {
  int max_sequences = 8;       // decoded together
  int max_queued = 256;        // waiting beyond this -> errc::overloaded
  int step_token_budget = 512;  // prefill tokens per step (decode tokens always go)
  int context_tokens = 2048;   // per sequence
  size_t prefix_cache_bytes = 64u << 20;  // KV of finished sequences kept for prompts that share a prefix; 0 = off
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
  void start(sequence& s, const std::vector<std::unique_ptr<sequence>>& active);

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
  prefix_cache prefix_;  // scheduler thread only
  std::thread thread_;
};

}  // namespace sluice::engine
