// Builds a llama_model from a parsed GGUF file. Every tensor the forward pass reads is looked up by its
// llama.cpp name and its shape checked here, so the kernels can trust rows/cols.
#include "llama_model.h"

#include <cmath>

#include "kernels.h"

namespace sluice::engine {
namespace {

constexpr uint64_t max_hparam = uint64_t(1) << 24;

std::string shape_str(const gguf_tensor& t) {
  std::string s = "[";
  for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "]";
}

result<weight> get_weight(const gguf_file& f, const std::string& name, int cols, int rows) {
  const gguf_tensor* t = f.tensor(name);
  if (!t) return error{errc::bad_file, "missing tensor '" + name + "'"};
  if (t->ne[0] != uint64_t(cols) || t->ne[1] != uint64_t(rows) || t->ne[2] != 1 || t->ne[3] != 1)
    return error{errc::bad_file, "tensor '" + name + "' has shape " + shape_str(*t) + ", expected [" +
                                     std::to_string(cols) + ", " + std::to_string(rows) + "]"};
  weight w;
  w.type = tensor_type(t->type);
  w.data = t->data;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = row_bytes_of(w.type, cols);
  return w;
}

result<std::vector<float>> get_vector(const gguf_file& f, const std::string& name, int n) {
  auto w = get_weight(f, name, n, 1);
  if (!w) return w.error();
  std::vector<float> v(static_cast<size_t>(n));
  dequantize_row(w->type, w->data, v.data(), n);
  return v;
}

result<int> get_hparam(const gguf_file& f, const std::string& key, std::optional<int> fallback) {
  auto v = f.get_uint(key);
  if (!v) return v.error();
  if (!*v) {
    if (fallback) return *fallback;
    return error{errc::bad_file, "missing metadata '" + key + "'"};
  }
  if (**v == 0 || **v > max_hparam)
    return error{errc::bad_file, "metadata '" + key + "' = " + std::to_string(**v) + " is out of range"};
  return int(**v);
}

}  // namespace

result<std::unique_ptr<llama_model>> load_llama_model(std::unique_ptr<gguf_file> file) {
  const gguf_file& f = *file;
  auto arch = f.get_string("general.architecture");
  if (!arch) return arch.error();
  if (!*arch) return error{errc::bad_file, "missing metadata 'general.architecture'"};
  if (!is_supported_architecture(**arch))
    return error{errc::unsupported,
                 "architecture '" + **arch + "' is not supported (supported: " + supported_architectures_text() + ")"};
  // Hyperparameters live under the architecture's own prefix (llama.embedding_length, qwen2.embedding_length...).
  const std::string a = **arch;
  const std::string k = a + ".";

  auto m = std::make_unique<llama_model>();
  m->arch = a;
  auto name = f.get_string("general.name");
  if (!name) return name.error();
  m->name = name->value_or("");
  llama_hparams& hp = m->hp;
#define SLUICE_HP(field, key, fb)                          \
  {                                                       \
    auto r = get_hparam(f, key, fb);                      \
    if (!r) return r.error();                             \
    hp.field = *r;                                        \
  }
  SLUICE_HP(n_embd, k + "embedding_length", std::nullopt)
  SLUICE_HP(n_layer, k + "block_count", std::nullopt)
  SLUICE_HP(n_head, k + "attention.head_count", std::nullopt)
  SLUICE_HP(n_head_kv, k + "attention.head_count_kv", hp.n_head)
  SLUICE_HP(n_ff, k + "feed_forward_length", std::nullopt)
  SLUICE_HP(n_ctx_train, k + "context_length", 2048)
  if (hp.n_embd % hp.n_head != 0)
    return error{errc::bad_file, k + "embedding_length is not a multiple of " + k + "attention.head_count"};
  SLUICE_HP(head_dim, k + "attention.key_length", hp.n_embd / hp.n_head)
  {
    auto vlen = get_hparam(f, k + "attention.value_length", hp.head_dim);
    if (!vlen) return vlen.error();
    if (*vlen != hp.head_dim)
      return error{errc::unsupported, k + "attention.value_length differs from key_length"};
  }
  SLUICE_HP(n_rot, k + "rope.dimension_count", hp.head_dim)
#undef SLUICE_HP
  if (hp.n_head % hp.n_head_kv != 0)
    return error{errc::bad_file, k + "attention.head_count is not a multiple of head_count_kv"};
  if (hp.n_rot > hp.head_dim || hp.n_rot % 2 != 0)
    return error{errc::bad_file, k + "rope.dimension_count must be even and <= the head size"};
  if (hp.n_layer > 1024) return error{errc::bad_file, k + "block_count is out of range"};
  hp.rope_neox = a != "llama";
  hp.attn_scale = 1.0f / std::sqrt(float(hp.head_dim));
  const bool gemma = a == "gemma3";
  if (gemma) {
    // Gemma 3 (llama.cpp's reading of it): embeddings scaled by sqrt(n_embd), GeGLU, post-norms, and every
    // sixth layer global while the others attend to a sliding window with their own RoPE base.
    hp.ffn = ffn_kind::geglu;
    hp.embd_scale = std::sqrt(float(hp.n_embd));
    hp.post_norms = true;
    auto swa = get_hparam(f, k + "attention.sliding_window", std::nullopt);
    if (!swa) return swa.error();
    hp.n_swa = *swa;
    hp.rope_freq_base_swa = 10000.0f;
    // query_pre_attn_scalar: head_dim, except in the 27B model (62 layers), where it is n_embd / n_head.
    if (hp.n_layer == 62) hp.attn_scale = 1.0f / std::sqrt(float(hp.n_embd / hp.n_head));
  }
  auto base = f.get_float(k + "rope.freq_base");
  if (!base) return base.error();
  hp.rope_freq_base = float(base->value_or(10000.0));
  auto eps = f.get_float(k + "attention.layer_norm_rms_epsilon");
  if (!eps) return eps.error();
  hp.rms_eps = float(eps->value_or(1e-5));
  if (!(hp.rope_freq_base > 0.0f) || !std::isfinite(hp.rope_freq_base))
    return error{errc::bad_file, k + "rope.freq_base must be positive"};
  if (!(hp.rms_eps >= 0.0f) || !std::isfinite(hp.rms_eps))
    return error{errc::bad_file, k + "attention.layer_norm_rms_epsilon must be non-negative"};
  if (auto scaling = f.get_string(k + "rope.scaling.type"); scaling && *scaling && **scaling != "none")
    return error{errc::unsupported, k + "rope.scaling.type '" + **scaling + "' is not supported"};

  const gguf_tensor* emb = f.tensor("token_embd.weight");
  if (!emb) return error{errc::bad_file, "missing tensor 'token_embd.weight'"};
  if (emb->ne[1] > max_hparam) return error{errc::bad_file, "token_embd.weight has too many rows"};
  auto vocab = get_hparam(f, k + "vocab_size", int(emb->ne[1]));
  if (!vocab) return vocab.error();
  hp.n_vocab = *vocab;

  auto te = get_weight(f, "token_embd.weight", hp.n_embd, hp.n_vocab);
  if (!te) return te.error();
  m->tok_embd = *te;
  auto on = get_vector(f, "output_norm.weight", hp.n_embd);
  if (!on) return on.error();
  m->output_norm = std::move(*on);
  if (f.tensor("output.weight")) {
    auto o = get_weight(f, "output.weight", hp.n_embd, hp.n_vocab);
    if (!o) return o.error();
    m->output = *o;
  } else {
    m->output = m->tok_embd;  // tied embeddings
  }
  if (f.tensor("rope_freqs.weight")) {
    auto rf = get_vector(f, "rope_freqs.weight", hp.n_rot / 2);
    if (!rf) return rf.error();
    m->rope_freq_factors = std::move(*rf);
  }
  m->layers.resize(size_t(hp.n_layer));
  for (int il = 0; il < hp.n_layer; ++il) {
    std::string p = "blk." + std::to_string(il) + ".";
    llama_layer& L = m->layers[size_t(il)];
    // Q/K/V biases: Qwen 2's (an output bias nobody uses is refused rather than ignored).
    if (f.tensor(p + "attn_output.bias"))
      return error{errc::unsupported, "tensor '" + p + "attn_output.bias' (attention output bias) is not supported"};
    struct { std::vector<float>* v; const char* n; int len; } biases[] = {
        {&L.bq, "attn_q.bias", hp.q_dim()}, {&L.bk, "attn_k.bias", hp.kv_dim()}, {&L.bv, "attn_v.bias", hp.kv_dim()}};
    for (auto& b : biases) {
      if (!f.tensor(p + b.n)) continue;
      if (a == "llama")
        return error{errc::unsupported, "tensor '" + p + b.n + "' (attention bias) is not supported for llama"};
      auto v = get_vector(f, p + b.n, b.len);
      if (!v) return v.error();
      *b.v = std::move(*v);
    }
    // Per-head Q/K norms: Qwen 3's.
    for (auto [v, n] : {std::pair{&L.q_norm, "attn_q_norm.weight"}, std::pair{&L.k_norm, "attn_k_norm.weight"}}) {
      if (!f.tensor(p + n)) continue;
      if (a == "llama") return error{errc::unsupported, "tensor '" + p + n + "' (Q/K norm) is not supported for llama"};
      auto w = get_vector(f, p + n, hp.head_dim);
      if (!w) return w.error();
      *v = std::move(*w);
    }
    if (L.q_norm.empty() != L.k_norm.empty())
      return error{errc::bad_file, "layer " + std::to_string(il) + " has only one of '" + p + "attn_q_norm.weight' and '" +
                                       p + "attn_k_norm.weight'"};
    if (gemma) {
      if (L.q_norm.empty()) return error{errc::bad_file, "missing tensor '" + p + "attn_q_norm.weight'"};
      for (auto [v, n] : {std::pair{&L.attn_post_norm, "post_attention_norm.weight"},
                          std::pair{&L.ffn_post_norm, "post_ffw_norm.weight"}}) {
        auto w = get_vector(f, p + n, hp.n_embd);
        if (!w) return w.error();
        *v = std::move(*w);
      }
      L.sliding = il % 6 < 5;  // llama.cpp's gemma3 pattern: five sliding layers, then a global one
    }
    auto an = get_vector(f, p + "attn_norm.weight", hp.n_embd);
    if (!an) return an.error();
    L.attn_norm = std::move(*an);
    auto fn = get_vector(f, p + "ffn_norm.weight", hp.n_embd);
    if (!fn) return fn.error();
    L.ffn_norm = std::move(*fn);
    struct { weight* w; const char* n; int cols, rows; } specs[] = {
        {&L.wq, "attn_q.weight", hp.n_embd, hp.q_dim()},      {&L.wk, "attn_k.weight", hp.n_embd, hp.kv_dim()},
        {&L.wv, "attn_v.weight", hp.n_embd, hp.kv_dim()},     {&L.wo, "attn_output.weight", hp.q_dim(), hp.n_embd},
        {&L.w_gate, "ffn_gate.weight", hp.n_embd, hp.n_ff},   {&L.w_up, "ffn_up.weight", hp.n_embd, hp.n_ff},
        {&L.w_down, "ffn_down.weight", hp.n_ff, hp.n_embd},
    };
    for (auto& s : specs) {
      auto w = get_weight(f, p + s.n, s.cols, s.rows);
      if (!w) return w.error();
      *s.w = *w;
    }
  }
  for (auto& t : f.tensors()) m->n_params += t.n_elems;
  m->file = std::move(file);
  return m;
}

}  // namespace sluice::engine
