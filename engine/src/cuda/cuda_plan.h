// Host-side planning for the CUDA backend, kept free of CUDA so that it builds and is unit-tested everywhere:
// which device to use, how much memory a model needs on it, how a batch is flattened into the arrays the
// kernels read, and the launch shapes. What must not go in here: CUDA calls (cuda_backend.cu), model math.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "backend.h"

namespace sluice::engine::cuda {

// A batch as flat arrays: per token its id, position and sequence; per sequence an offset into `blocks`
// (all block tables one after another); the tokens whose logits are wanted, in output-row order.
struct flat_batch {
  std::vector<int32_t> tokens, positions, seq_of_token;
  std::vector<int32_t> table_offset;  // per sequence
  std::vector<kv_block_id> blocks;
  std::vector<int32_t> logits_tokens;  // token index per logits row
  int max_positions = 0;               // the longest attention span of any token (its position + 1)
};

// Flattens `batch`; throws std::invalid_argument when a block table does not cover its positions or a block id
// is outside [0, n_blocks).
flat_batch flatten(std::span<const batch_seq> batch, int block_tokens, int n_blocks);

// Device memory the model needs, in bytes.
struct memory_plan {
  size_t weights = 0;         // quantized blocks as they are in the file, norms as float
  size_t kv_block = 0;        // one KV block (all layers, keys and values, f16)
  size_t scratch_per_token = 0;  // activations of one token of a step
  size_t scratch(int tokens, int max_positions, int n_head) const {  // + attention scores
    return scratch_per_token * size_t(tokens) + size_t(tokens) * size_t(n_head) * size_t(max_positions) * 4;
  }
};
memory_plan plan_memory(const llama_model& m, int block_tokens);

// Launch shapes: one warp per weight row (8 rows per block of 256 threads), one block per (token, head) for
// attention, one block per token for norms.
struct launch_shape {
  unsigned grid_x = 1, grid_y = 1, block = 1;
};
launch_shape matvec_shape(int rows, int tokens);
launch_shape attention_shape(int tokens, int n_head);
constexpr int matvec_rows_per_block = 8;

// Which backend `device` ("cpu", "cuda", "auto") resolves to, given whether a CUDA device is usable here
// (`cuda_why_not`: "" when it is, else why not). "cuda" without a device is an error; "auto" falls back to the
// CPU and says why in `note`.
struct device_choice {
  bool use_cuda = false;
  std::string error;  // non-empty: refuse to load
  std::string note;   // a line for the log
};
device_choice choose_device(const std::string& device, const std::string& cuda_why_not);

}  // namespace sluice::engine::cuda
