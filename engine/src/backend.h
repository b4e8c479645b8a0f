// The small interface between the scheduler and whatever computes the model (CPU today; a CUDA backend
// later, checked against the CPU one, which is the reference). A step runs the model over the tokens of
// several sequences at once: prefill chunks and single decode tokens mixed, one weight pass for all.
// What must not go in here: sampling, text, scheduling policy.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "llama_model.h"

namespace sluice::engine {

class kv_cache {  // one sequence's keys and values; owned by the sequence, filled by the backend
 public:
  virtual ~kv_cache() = default;
  virtual int capacity_tokens() const = 0;
  virtual size_t bytes() const = 0;
};

struct batch_seq {
  kv_cache* kv = nullptr;               // positions [pos0, pos0 + tokens.size()) are written
  std::span<const token_id> tokens;
  int pos0 = 0;
  enum class logits { none, last, all } want = logits::last;
};

class backend {
 public:
  virtual ~backend() = default;
  virtual const char* name() const = 0;
  virtual std::unique_ptr<kv_cache> new_cache(int capacity_tokens) = 0;
  // Copies the keys and values of positions [0, n_tokens) of every layer from one cache to another. A
  // position's keys and values depend only on the tokens up to it, so a sequence whose prompt starts with the
  // same n_tokens tokens can start from the copy (the prefix cache). n_tokens must fit both caches.
  virtual void copy_prefix(const kv_cache& from, kv_cache& to, int n_tokens) = 0;
  // Runs all sequences' tokens through the model. logits: (rows, n_vocab), rows in batch order, one per
  // requested position (`last`: 1, `all`: tokens.size()). Token ids must be < n_vocab, positions within
  // each cache's capacity (the caller checks).
  virtual void forward(std::span<const batch_seq> batch, std::vector<float>& logits) = 0;
};

enum class kv_type { f16, f32 };
struct kernel_table;
// kernels: nullptr = the best the CPU supports (tests pass scalar_kernels() to check the fallback).
std::unique_ptr<backend> make_cpu_backend(const llama_model& m, int threads, kv_type kv,
                                          const kernel_table* kernels = nullptr);

// Logits of every position of `tokens` run from an empty cache: (tokens.size(), n_vocab). For golden tests.
std::vector<float> logits_for_sequence(backend& b, std::span<const token_id> tokens);

}  // namespace sluice::engine
