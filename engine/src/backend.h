// The small interface between the scheduler and whatever computes the model (CPU today; a CUDA backend
// later, checked against the CPU one, which is the reference). A step runs the model over the tokens of
// several sequences at once: prefill chunks and single decode tokens mixed, one weight pass for all.
// What must not go in here: sampling, text, scheduling policy.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "block_allocator.h"
#include "llama_model.h"

namespace sluice::engine {

// Keys and values live in one pool of fixed-size blocks per backend (paged KV): block b holds
// kv_block_tokens() consecutive positions of every layer. A sequence's block table maps its position p to
// block blocks[p / kv_block_tokens()], slot p % kv_block_tokens(); blocks may be shared between sequences
// (a common prefix) and need not be contiguous or ordered. Which blocks are free is the caller's business
// (block_allocator); the backend only owns the memory.
struct batch_seq {
  std::span<const kv_block_id> blocks;  // covers positions [0, pos0 + tokens.size())
  std::span<const token_id> tokens;     // written at positions [pos0, pos0 + tokens.size())
  int pos0 = 0;
  enum class logits { none, last, all } want = logits::last;
};

class backend {
 public:
  virtual ~backend() = default;
  virtual const char* name() const = 0;
  virtual int kv_block_tokens() const = 0;
  virtual size_t kv_block_bytes() const = 0;  // all layers' keys and values of one block
  // (Re)creates the pool with n_blocks blocks, forgetting any previous contents. Throws std::bad_alloc.
  // Pages are touched only when written, so a large pool costs address space until it fills.
  virtual void reserve_kv_blocks(int n_blocks) = 0;
  virtual int kv_blocks() const = 0;
  // Copies positions [0, n_tokens) of every layer from one block to another (n_tokens <= kv_block_tokens()).
  virtual void copy_kv_block(kv_block_id from, kv_block_id to, int n_tokens) = 0;
  // Runs all sequences' tokens through the model. logits: (rows, n_vocab), rows in batch order, one per
  // requested position (`last`: 1, `all`: tokens.size()). Token ids must be < n_vocab and every block table
  // must cover its positions with valid block ids (the caller checks); two sequences of one batch must not
  // write the same block.
  virtual void forward(std::span<const batch_seq> batch, std::vector<float>& logits) = 0;
};

enum class kv_type { f16, f32 };
struct kernel_table;
// kernels: nullptr = the best the CPU supports (tests pass scalar_kernels() to check the fallback).
std::unique_ptr<backend> make_cpu_backend(const llama_model& m, int threads, kv_type kv,
                                          const kernel_table* kernels = nullptr);

// Logits of every position of `tokens` run from an empty cache: (tokens.size(), n_vocab). For golden tests:
// it uses the pool's first blocks (growing the pool if it must), so never on a backend a scheduler uses.
std::vector<float> logits_for_sequence(backend& b, std::span<const token_id> tokens);

}  // namespace sluice::engine
