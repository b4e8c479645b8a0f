// See cuda_plan.h.
#include "cuda/cuda_plan.h"

#include <stdexcept>

#include "kernels.h"

namespace sluice::engine::cuda {

flat_batch flatten(std::span<const batch_seq> batch, int block_tokens, int n_blocks) {
  flat_batch f;
  for (size_t s = 0; s < batch.size(); ++s) {
    const batch_seq& b = batch[s];
    const int end = b.pos0 + int(b.tokens.size());
    if (b.pos0 < 0 || int64_t(b.blocks.size()) * block_tokens < end)
      throw std::invalid_argument("sequence " + std::to_string(s) + ": its block table covers " +
                                  std::to_string(b.blocks.size() * size_t(block_tokens)) + " positions, " +
                                  std::to_string(end) + " needed");
    f.table_offset.push_back(int32_t(f.blocks.size()));
    for (kv_block_id id : b.blocks) {
      if (id < 0 || id >= n_blocks)
        throw std::invalid_argument("sequence " + std::to_string(s) + ": block " + std::to_string(id) +
                                    " is outside the pool of " + std::to_string(n_blocks));
      f.blocks.push_back(id);
    }
    for (size_t i = 0; i < b.tokens.size(); ++i) {
      const int32_t t = int32_t(f.tokens.size());
      f.tokens.push_back(b.tokens[i]);
      f.positions.push_back(b.pos0 + int32_t(i));
      f.seq_of_token.push_back(int32_t(s));
      const bool last = i + 1 == b.tokens.size();
      if (b.want == batch_seq::logits::all || (b.want == batch_seq::logits::last && last)) f.logits_tokens.push_back(t);
    }
    if (end > f.max_positions) f.max_positions = end;
  }
  return f;
}

memory_plan plan_memory(const llama_model& m, int block_tokens) {
  const llama_hparams& hp = m.hp;
  memory_plan p;
  auto bytes = [](const weight& w) { return size_t(w.rows) * w.row_bytes; };
  p.weights = bytes(m.tok_embd) + (m.output.data == m.tok_embd.data ? 0 : bytes(m.output)) +
              size_t(hp.n_embd) * 4 + m.rope_freq_factors.size() * 4;
  for (const llama_layer& l : m.layers) {
    p.weights += bytes(l.wq) + bytes(l.wk) + bytes(l.wv) + bytes(l.wo) + bytes(l.w_gate) + bytes(l.w_up) +
                 bytes(l.w_down) + size_t(hp.n_embd) * 2 * 4;
  }
  p.kv_block = size_t(hp.n_layer) * 2 * size_t(block_tokens) * size_t(hp.kv_dim()) * 2;
  // x, normed x, q|k|v, attention output, gate, up (floats) and the Q8 copy of the widest input
  const size_t widest = size_t(std::max(hp.n_embd, std::max(hp.n_ff, hp.q_dim())));
  p.scratch_per_token = 4 * (2 * size_t(hp.n_embd) + size_t(hp.q_dim() + 2 * hp.kv_dim()) + size_t(hp.q_dim()) +
                             2 * size_t(hp.n_ff)) +
                        (widest / qk) * sizeof(block_q8_act);
  return p;
}

launch_shape matvec_shape(int rows, int tokens) {
  launch_shape s;
  s.grid_x = unsigned((rows + matvec_rows_per_block - 1) / matvec_rows_per_block);
  s.grid_y = unsigned(tokens);
  s.block = 32 * matvec_rows_per_block;
  return s;
}

launch_shape attention_shape(int tokens, int n_head) {
  launch_shape s;
  s.grid_x = unsigned(tokens);
  s.grid_y = unsigned(n_head);
  s.block = 128;
  return s;
}

device_choice choose_device(const std::string& device, const std::string& cuda_why_not) {
  device_choice c;
  if (device == "cpu" || device.empty()) return c;
  if (device == "cuda") {
    if (cuda_why_not.empty()) c.use_cuda = true;
    else c.error = "device cuda was asked for, but " + cuda_why_not;
    return c;
  }
  if (device == "auto") {
    if (cuda_why_not.empty()) {
      c.use_cuda = true;
      c.note = "device auto: using the CUDA backend";
    } else {
      c.note = "device auto: running on the CPU (" + cuda_why_not + ")";
    }
    return c;
  }
  c.error = "device must be cpu, cuda or auto, got '" + device + "'";
  return c;
}

}  // namespace sluice::engine::cuda
