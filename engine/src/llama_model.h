// The decoder-only architectures the engine runs, as llama.cpp's converter stores them in GGUF: "llama" and
// the variants that add pieces to its pass (qwen2: Q/K/V biases; qwen3: Q/K norms; gemma3: Q/K norms,
// post-norms, GeGLU, scaled embeddings, sliding-window layers). Hyperparameters come from <arch>.* metadata
// and weights are views into the mapped file, with every shape checked against the hyperparameters.
// What must not go in here: the forward computation (cpu_backend), tokenizer metadata (model_loader).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "architectures.h"
#include "gguf.h"
#include "tensor_types.h"

namespace sluice::engine {

struct weight {  // (rows, cols) row-major, row r at data + r * row_bytes, in the mapped file
  tensor_type type = tensor_type::f32;
  const uint8_t* data = nullptr;
  int rows = 0, cols = 0;
  size_t row_bytes = 0;
};

enum class ffn_kind { swiglu, geglu };  // silu(gate) * up, or gelu(gate) * up (Gemma)

struct llama_hparams {
  int n_vocab = 0, n_ctx_train = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0;
  int head_dim = 0;  // per attention head
  int n_rot = 0;     // rotated dimensions per head (<= head_dim)
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  // NEOX-style RoPE (Qwen): dimension i of a head turns with i + n_rot / 2, not with its neighbour.
  bool rope_neox = false;
  ffn_kind ffn = ffn_kind::swiglu;
  float attn_scale = 0.0f;   // softmax(q.k * attn_scale): 1 / sqrt(head_dim) unless the architecture says otherwise
  float embd_scale = 1.0f;   // token embeddings are multiplied by this (Gemma: sqrt(n_embd))
  bool post_norms = false;   // RMSNorm of the attention and FFN outputs before each residual add (Gemma)
  int n_swa = 0;             // sliding window: a sliding layer's query sees the last n_swa positions (0: none)
  float rope_freq_base_swa = 0.0f;  // RoPE base of sliding layers (0: rope_freq_base)
  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
};

struct llama_layer {
  std::vector<float> attn_norm;  // (n_embd)
  weight wq;                     // (q_dim, n_embd)
  weight wk, wv;                 // (kv_dim, n_embd)
  weight wo;                     // (n_embd, q_dim)
  std::vector<float> ffn_norm;   // (n_embd)
  weight w_gate, w_up;           // (n_ff, n_embd)
  weight w_down;                 // (n_embd, n_ff)
  std::vector<float> bq, bk, bv;      // Q/K/V biases (Qwen 2), empty when the model has none
  std::vector<float> q_norm, k_norm;  // per-head RMSNorm of Q and K before RoPE (Qwen 3, Gemma 3), (head_dim) or empty
  std::vector<float> attn_post_norm, ffn_post_norm;  // (n_embd) when hp.post_norms
  bool sliding = false;  // attends to the last hp.n_swa positions only, with RoPE base hp.rope_freq_base_swa
};

struct llama_model {
  std::string arch = "llama";  // general.architecture: one of supported_architectures
  std::string name;
  llama_hparams hp;
  weight tok_embd;                 // (n_vocab, n_embd)
  std::vector<float> output_norm;  // (n_embd)
  weight output;                   // (n_vocab, n_embd); the embedding itself when tied
  std::vector<float> rope_freq_factors;  // (n_rot / 2) or empty (rope_freqs.weight, Llama 3.1 scaling)
  std::vector<llama_layer> layers;
  uint64_t n_params = 0;
  std::unique_ptr<gguf_file> file;  // owns the map the weights point into
};

// Errors: errc::unsupported for another architecture; errc::bad_file naming the missing/misshapen tensor
// or the bad hyperparameter.
result<std::unique_ptr<llama_model>> load_llama_model(std::unique_ptr<gguf_file> file);

}  // namespace sluice::engine
