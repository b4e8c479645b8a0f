// The llama forward pass on CPU, one block per function as in the paper: RMSNorm -> Q/K/V -> RoPE ->
// causal GQA attention over the KV cache -> output projection + residual -> RMSNorm -> SwiGLU FFN +
// residual; then the final norm and the vocabulary projection for the positions that need logits.
// The other architectures switch pieces on through the hyperparameters: Q/K/V biases and per-head Q/K norms
// (Qwen), NEOX RoPE, and for Gemma 3 scaled embeddings, GeGLU, a norm of each block's output before its
// residual add, and sliding-window layers with their own RoPE base.
// A whole step is one thread_pool::run(); work is split by rows (matmuls) or tokens/heads, with a
// barrier between dependent phases. Weights are read in place (quantized) from the mapped file, or from a
// repacked copy (weight_packing.h) where the kernels want one;
// activations are quantized to Q8 once per row for the integer dot products.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "backend.h"
#include "kernels.h"
#include "thread_pool.h"
#include "weight_packing.h"

namespace sluice::engine {
namespace {

constexpr int max_step_tokens = 256;  // tokens per internal chunk (bounds the scratch buffers)
constexpr int local_prepare_tokens = 16;  // up to this many tokens, each thread prepares inputs itself

constexpr int kv_block_tokens_default = 16;  // positions per KV block (the prefix cache's granularity)

// The KV pool: n_blocks blocks, each (n_layer, block_tokens, kv_dim) keys and the same of values, F16 or F32.
// A block is contiguous, so copying one is one memcpy per tensor.
class kv_pool {
 public:
  void reserve(int n_layer, int n_blocks, int block_tokens, int kv_dim, bool f16) {
    k16_.reset(); v16_.reset(); k32_.reset(); v32_.reset();
    n_blocks_ = 0;
    n_layer_ = n_layer; block_tokens_ = block_tokens; kv_dim_ = kv_dim; f16_ = f16;
    const size_t n = size_t(n_blocks) * block_elems();
    // new T[] without () leaves the memory untouched: the kernel maps pages on first write.
    if (f16) { k16_.reset(new uint16_t[n]); v16_.reset(new uint16_t[n]); }
    else { k32_.reset(new float[n]); v32_.reset(new float[n]); }
    n_blocks_ = n_blocks;
  }
  size_t block_elems() const { return size_t(n_layer_) * size_t(block_tokens_) * size_t(kv_dim_); }
  // Element offset of (layer, slot) in block b.
  size_t index(kv_block_id b, int layer, int slot) const {
    return size_t(b) * block_elems() + (size_t(layer) * size_t(block_tokens_) + size_t(slot)) * size_t(kv_dim_);
  }

  int n_blocks_ = 0, n_layer_ = 0, block_tokens_ = kv_block_tokens_default, kv_dim_ = 0;
  bool f16_ = true;
  // (n_blocks, n_layer, block_tokens, kv_dim) each
  std::unique_ptr<uint16_t[]> k16_, v16_;
  std::unique_ptr<float[]> k32_, v32_;
};

struct token_slot {
  token_id token;
  int pos;
  const kv_block_id* blocks;  // the sequence's block table
  int logits_row;  // -1: none
};

void rms_norm(const float* x, const float* w, float* out, int n, float eps) {
  double ss = 0.0;
  for (int i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float mean = float(ss / n);  // float mean and sqrtf, as ggml does, to stay bit-close to llama.cpp
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

class cpu_backend final : public backend {
 public:
  cpu_backend(const llama_model& m, int threads, kv_type kv, const kernel_table* kernels)
      : m_(m), hp_(m.hp), k_(kernels ? *kernels : cpu_kernels()), packed_(m, k_), pool_(threads),
        kv_f16_(kv == kv_type::f16) {
    const int T = max_step_tokens;
    qkv_ld_ = hp_.q_dim() + 2 * hp_.kv_dim();
    x_.resize(size_t(T) * hp_.n_embd);
    xn_.resize(size_t(T) * std::max({hp_.n_embd, hp_.q_dim(), hp_.n_ff}));
    xq_.resize(size_t(T) * (std::max({hp_.n_embd, hp_.q_dim(), hp_.n_ff}) / qk + 1));
    qkv_.resize(size_t(T) * qkv_ld_);
    att_.resize(size_t(T) * std::max(hp_.q_dim(), hp_.n_embd));
    gate_.resize(size_t(T) * hp_.n_ff);
    up_.resize(size_t(T) * hp_.n_ff);
    rope_.resize(size_t(T) * hp_.n_rot);
    if (sliding_rope()) rope_swa_.resize(size_t(T) * hp_.n_rot);
    if (hp_.post_norms) post_.resize(size_t(T) * hp_.n_embd);
    scores_.resize(size_t(pool_.size()));
    qround_.assign(size_t(pool_.size()), std::vector<float>(size_t(hp_.head_dim)));
    const size_t max_dim = size_t(std::max({hp_.n_embd, hp_.q_dim(), hp_.n_ff}));
    xn_local_.assign(size_t(pool_.size()), std::vector<float>(local_prepare_tokens * max_dim));
    xq_local_.assign(size_t(pool_.size()), std::vector<block_q8_act>(local_prepare_tokens * (max_dim / qk + 1)));
    inv_freq_ = inverse_frequencies(hp_.rope_freq_base);
    if (sliding_rope()) inv_freq_swa_ = inverse_frequencies(hp_.rope_freq_base_swa);
  }

  const char* name() const override { return k_.name; }

  int kv_block_tokens() const override { return kv_.block_tokens_; }
  size_t kv_block_bytes() const override {
    return 2 * size_t(hp_.n_layer) * size_t(kv_.block_tokens_) * size_t(hp_.kv_dim()) * (kv_f16_ ? 2 : 4);
  }
  void reserve_kv_blocks(int n_blocks) override {
    if (n_blocks < 0) throw std::invalid_argument("reserve_kv_blocks: negative count");
    kv_.reserve(hp_.n_layer, n_blocks, kv_block_tokens_default, hp_.kv_dim(), kv_f16_);
  }
  int kv_blocks() const override { return kv_.n_blocks_; }

  void copy_kv_block(kv_block_id from, kv_block_id to, int n_tokens) override {
    if (from == to) return;
    if (from < 0 || to < 0 || from >= kv_.n_blocks_ || to >= kv_.n_blocks_ || n_tokens < 0 ||
        n_tokens > kv_.block_tokens_)
      throw std::logic_error("copy_kv_block: bad block or count");
    const size_t n = size_t(n_tokens) * size_t(kv_.kv_dim_);  // slots [0, n_tokens) of one layer, contiguous
    for (int il = 0; il < hp_.n_layer; ++il) {
      const size_t ia = kv_.index(from, il, 0), ib = kv_.index(to, il, 0);
      if (kv_.f16_) {
        std::memcpy(&kv_.k16_[ib], &kv_.k16_[ia], n * sizeof(uint16_t));
        std::memcpy(&kv_.v16_[ib], &kv_.v16_[ia], n * sizeof(uint16_t));
      } else {
        std::memcpy(&kv_.k32_[ib], &kv_.k32_[ia], n * sizeof(float));
        std::memcpy(&kv_.v32_[ib], &kv_.v32_[ia], n * sizeof(float));
      }
    }
  }

  void forward(std::span<const batch_seq> batch, std::vector<float>& logits) override {
    std::vector<token_slot> slots;
    int rows = 0;
    for (auto& s : batch) {
      int n = int(s.tokens.size());
      const int needed = (s.pos0 + n + kv_.block_tokens_ - 1) / kv_.block_tokens_;
      if (s.pos0 < 0 || int(s.blocks.size()) < needed) throw std::logic_error("forward: block table too short");
      for (int j = 0; j < needed; ++j)
        if (s.blocks[size_t(j)] < 0 || s.blocks[size_t(j)] >= kv_.n_blocks_)
          throw std::logic_error("forward: block id outside the pool");
      for (int i = 0; i < n; ++i) {
        int row = -1;
        if (s.want == batch_seq::logits::all || (s.want == batch_seq::logits::last && i == n - 1)) row = rows++;
        slots.push_back({s.tokens[size_t(i)], s.pos0 + i, s.blocks.data(), row});
      }
    }
    logits.resize(size_t(rows) * hp_.n_vocab);
    for (size_t b = 0; b < slots.size(); b += max_step_tokens) {
      size_t e = std::min(slots.size(), b + max_step_tokens);
      run_chunk(std::span<const token_slot>(slots.data() + b, e - b), logits.data());
    }
  }

 private:
  // Sliding-window layers turn with another RoPE base (Gemma 3): a second table of angles.
  bool sliding_rope() const { return hp_.rope_freq_base_swa > 0.0f && hp_.rope_freq_base_swa != hp_.rope_freq_base; }

  std::vector<double> inverse_frequencies(float base) const {
    std::vector<double> inv(size_t(hp_.n_rot / 2));
    for (int i = 0; i < hp_.n_rot / 2; ++i) {
      double f = std::pow(double(base), -2.0 * i / hp_.n_rot);
      if (!m_.rope_freq_factors.empty()) f /= m_.rope_freq_factors[size_t(i)];
      inv[size_t(i)] = f;
    }
    return inv;
  }

  static void fill_rope(float* r, int pos, const std::vector<double>& inv) {
    for (size_t i = 0; i < inv.size(); ++i) {
      double th = double(pos) * inv[i];
      r[2 * i] = float(std::cos(th));
      r[2 * i + 1] = float(std::sin(th));
    }
  }

  // Gemma's post-norms: x[t] += RMSNorm(out[t]) * w for the tokens of this thread (out: (nt, n_embd)).
  void add_post_norm(int tid, int nth, int nt, const float* out, const std::vector<float>& w) {
    const int E = hp_.n_embd;
    auto [t0, t1] = split_range(nt, tid, nth);
    float* tmp = xn_local_[size_t(tid)].data();
    for (int t = t0; t < t1; ++t) {
      rms_norm(out + size_t(t) * E, w.data(), tmp, E, hp_.rms_eps);
      float* x = x_.data() + size_t(t) * E;
      for (int i = 0; i < E; ++i) x[i] += tmp[i];
    }
  }

  // Matmul over rows [r0, r1) of w for all nt tokens, input chosen by the weight type.
  void matmul(const weight& w, int r0, int r1, int nt, const float* xf, int ldxf, const block_q8_act* xq,
              int ldxq, float* y, int ldy, bool acc) {
    if (r0 >= r1 || nt == 0) return;
    matmul_args a;
    a.type = w.type; a.w = w.data; a.row_bytes = w.row_bytes; a.k = w.cols;
    a.r0 = r0; a.r1 = r1; a.nt = nt;
    a.xf = xf; a.ldxf = ldxf; a.xq = xq; a.ldxq = ldxq;
    a.y = y; a.ldy = ldy; a.accumulate = acc;
    if (const uint8_t* p = packed_.find(w.data)) {
      a.w = p;
      a.packed_rows = w.rows / pack_group_rows * pack_group_rows;
    }
    k_.matmul(a);
  }

  // Where a matmul reads its prepared input from.
  struct prepared {
    const float* xf;
    const block_q8_act* xq;
  };

  // Normalises (or copies) nt rows of `in` (ld n), then quantizes them to Q8 (quantized weight) or rounds
  // them to the weight's float type (F16/BF16, as llama.cpp does). Few tokens: every thread prepares all
  // rows into its own buffers (no barrier). Many tokens: split over threads into the shared buffers, then
  // a barrier.
  prepared prepare(int tid, int nth, int nt, const float* in, int n, const float* norm_w, const weight& w) {
    const bool quant = needs_q8_activations(w.type);
    const tensor_type round_to = w.type == tensor_type::f16 || w.type == tensor_type::bf16 ? w.type : tensor_type::f32;
    const bool local = nt <= local_prepare_tokens;
    float* xn = local ? xn_local_[size_t(tid)].data() : xn_.data();
    block_q8_act* xq = local ? xq_local_[size_t(tid)].data() : xq_.data();
    auto [t0, t1] = local ? std::pair<int, int>{0, nt} : split_range(nt, tid, nth);
    const int nb = n / qk;
    for (int t = t0; t < t1; ++t) {
      float* dst = xn + size_t(t) * n;
      if (norm_w) rms_norm(in + size_t(t) * n, norm_w, dst, n, hp_.rms_eps);
      else std::memcpy(dst, in + size_t(t) * n, size_t(n) * 4);
      if (quant) k_.quantize_q8(dst, xq + size_t(t) * nb, n);
      else if (round_to != tensor_type::f32) round_row(dst, n, round_to);
    }
    if (!local) pool_.barrier();
    return {xn, xq};
  }

  // llama.cpp multiplies F16/BF16 weights with activations rounded to the same type; doing the same keeps
  // our logits within float noise of its.
  static void round_row(float* v, int n, tensor_type t) {
    for (int i = 0; i < n; ++i) {
      if (t == tensor_type::f16) {
        v[i] = fp16_to_f32(f32_to_fp16(v[i]));
      } else {
        uint32_t b;
        std::memcpy(&b, &v[i], 4);
        b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
        std::memcpy(&v[i], &b, 4);
      }
    }
  }

  void run_chunk(std::span<const token_slot> slots, float* logits) {
    const int nt = int(slots.size());
    const int E = hp_.n_embd, Q = hp_.q_dim(), KV = hp_.kv_dim(), F = hp_.n_ff;
    int max_pos = 0;
    for (auto& s : slots) max_pos = std::max(max_pos, s.pos);
    for (auto& sc : scores_) if (int(sc.size()) < max_pos + 1) sc.resize(size_t(max_pos) + 1);

    pool_.run([&](int tid, int nth) {
      // Embeddings and RoPE angles (cos, sin per pair), split over tokens.
      {
        auto [t0, t1] = split_range(nt, tid, nth);
        for (int t = t0; t < t1; ++t) {
          const token_slot& s = slots[size_t(t)];
          float* x = x_.data() + size_t(t) * E;
          dequantize_row(m_.tok_embd.type, m_.tok_embd.data + size_t(s.token) * m_.tok_embd.row_bytes, x, E);
          if (hp_.embd_scale != 1.0f)
            for (int i = 0; i < E; ++i) x[i] *= hp_.embd_scale;
          fill_rope(rope_.data() + size_t(t) * hp_.n_rot, s.pos, inv_freq_);
          if (sliding_rope()) fill_rope(rope_swa_.data() + size_t(t) * hp_.n_rot, s.pos, inv_freq_swa_);
        }
      }
      pool_.barrier();
      for (int il = 0; il < hp_.n_layer; ++il) {
        const llama_layer& L = m_.layers[size_t(il)];
        // Attention block: Q/K/V rows split over threads; each thread rotates and caches its own rows.
        {
          prepared in = prepare(tid, nth, nt, x_.data(), E, L.attn_norm.data(), L.wq);
          // NEOX RoPE and per-head Q/K norms read whole heads: then threads split at head boundaries.
          const int unit = hp_.rope_neox || !L.q_norm.empty() ? hp_.head_dim : 8;
          auto [q0, q1] = split_range(Q, tid, nth, unit);
          auto [k0, k1] = split_range(KV, tid, nth, unit);
          matmul(L.wq, q0, q1, nt, in.xf, E, in.xq, E / qk, qkv_.data(), qkv_ld_, false);
          matmul(L.wk, k0, k1, nt, in.xf, E, in.xq, E / qk, qkv_.data() + Q, qkv_ld_, false);
          matmul(L.wv, k0, k1, nt, in.xf, E, in.xq, E / qk, qkv_.data() + Q + KV, qkv_ld_, false);
          rope_and_store(slots, L, il, q0, q1, k0, k1);
        }
        pool_.barrier();
        attention(tid, nth, slots, il, L.sliding ? hp_.n_swa : 0);
        pool_.barrier();
        // Output projections add into the residual stream, or (post-norms) go to post_ to be normed first.
        float* const proj = hp_.post_norms ? post_.data() : x_.data();
        {
          prepared in = prepare(tid, nth, nt, att_.data(), Q, nullptr, L.wo);
          auto [r0, r1] = split_range(E, tid, nth, 8);
          matmul(L.wo, r0, r1, nt, in.xf, Q, in.xq, Q / qk, proj, E, !hp_.post_norms);
        }
        pool_.barrier();
        if (hp_.post_norms) {
          add_post_norm(tid, nth, nt, post_.data(), L.attn_post_norm);
          pool_.barrier();
        }
        // Feed-forward block (SwiGLU or GeGLU): gate and up rows split together, so each thread finishes its rows.
        {
          prepared in = prepare(tid, nth, nt, x_.data(), E, L.ffn_norm.data(), L.w_gate);
          auto [r0, r1] = split_range(F, tid, nth, 8);
          matmul(L.w_gate, r0, r1, nt, in.xf, E, in.xq, E / qk, gate_.data(), F, false);
          matmul(L.w_up, r0, r1, nt, in.xf, E, in.xq, E / qk, up_.data(), F, false);
          auto act = hp_.ffn == ffn_kind::geglu ? gelu_mul : k_.silu_mul;
          for (int t = 0; t < nt; ++t)
            act(gate_.data() + size_t(t) * F + r0, up_.data() + size_t(t) * F + r0, r1 - r0);
        }
        pool_.barrier();
        {
          prepared in = prepare(tid, nth, nt, gate_.data(), F, nullptr, L.w_down);
          auto [r0, r1] = split_range(E, tid, nth, 8);
          matmul(L.w_down, r0, r1, nt, in.xf, F, in.xq, F / qk, proj, E, !hp_.post_norms);
        }
        pool_.barrier();
        if (hp_.post_norms) {
          add_post_norm(tid, nth, nt, post_.data(), L.ffn_post_norm);
          pool_.barrier();
        }
      }
      // Final norm and vocabulary projection, only for rows that want logits (compacted).
      std::vector<int> out_rows;  // token index of each logits row
      for (int t = 0; t < nt; ++t)
        if (slots[size_t(t)].logits_row >= 0) out_rows.push_back(t);
      const int n_out = int(out_rows.size());
      if (n_out == 0) return;
      for (int j = 0; j < n_out; ++j)  // gather the rows to project into att_ (free now)
        if (j % nth == tid) std::memcpy(att_.data() + size_t(j) * E, x_.data() + size_t(out_rows[size_t(j)]) * E, size_t(E) * 4);
      pool_.barrier();
      prepared in = prepare(tid, nth, n_out, att_.data(), E, m_.output_norm.data(), m_.output);
      // Logits rows of one chunk are consecutive (assigned in slot order): one pass over the output matrix
      // serves all of them.
      const int first_row = slots[size_t(out_rows[0])].logits_row;
      auto [r0, r1] = split_range(hp_.n_vocab, tid, nth, 8);
      matmul(m_.output, r0, r1, n_out, in.xf, E, in.xq, E / qk, logits + size_t(first_row) * hp_.n_vocab,
             hp_.n_vocab, false);
    });
  }

  void rope_rotate_rows(float* v, int r0, int r1, const float* cs) const {
    const int hd = hp_.head_dim;
    if (hp_.rope_neox) {  // (r0, r1 are head boundaries here) dimension i turns with i + n_rot / 2
      const int half = hp_.n_rot / 2;
      for (int h0 = r0; h0 < r1; h0 += hd) {
        for (int i = 0; i < half; ++i) {
          const float c = cs[2 * i], s = cs[2 * i + 1], a = v[h0 + i], b = v[h0 + i + half];
          v[h0 + i] = a * c - b * s;
          v[h0 + i + half] = a * s + b * c;
        }
      }
      return;
    }
    for (int r = r0 & ~1; r + 1 < r1; r += 2) {
      int j = r % hd;
      if (j >= hp_.n_rot) continue;
      float c = cs[j], s = cs[j + 1], a = v[r], b = v[r + 1];
      v[r] = a * c - b * s;
      v[r + 1] = a * s + b * c;
    }
  }

  // x[r] += b[r] for rows [r0, r1) (an empty b: none).
  static void add_bias(float* x, const std::vector<float>& b, int r0, int r1) {
    if (b.empty()) return;
    for (int r = r0; r < r1; ++r) x[r] += b[size_t(r)];
  }
  // RMSNorm of every head in rows [r0, r1) (head boundaries) with the weights w (head_dim).
  void head_norm(float* x, const std::vector<float>& w, int r0, int r1) const {
    if (w.empty()) return;
    for (int h0 = r0; h0 < r1; h0 += hp_.head_dim) rms_norm(x + h0, w.data(), x + h0, hp_.head_dim, hp_.rms_eps);
  }

  // Adds this thread's Q/K/V biases, norms its Q/K heads (Qwen), rotates its Q rows [q0, q1) and K rows [k0, k1)
  // of every token and writes its K/V rows into the cache at the token's position.
  void rope_and_store(std::span<const token_slot> slots, const llama_layer& L, int il, int q0, int q1, int k0, int k1) {
    const int Q = hp_.q_dim(), KV = hp_.kv_dim();
    for (size_t t = 0; t < slots.size(); ++t) {
      const token_slot& s = slots[t];
      float* q = qkv_.data() + t * size_t(qkv_ld_);
      float* k = q + Q;
      float* v = k + KV;
      add_bias(q, L.bq, q0, q1);
      add_bias(k, L.bk, k0, k1);
      add_bias(v, L.bv, k0, k1);
      head_norm(q, L.q_norm, q0, q1);
      head_norm(k, L.k_norm, k0, k1);
      const float* cs = (L.sliding && sliding_rope() ? rope_swa_ : rope_).data() + t * size_t(hp_.n_rot);
      rope_rotate_rows(q, q0, q1, cs);
      rope_rotate_rows(k, k0, k1, cs);
      if (k1 <= k0) continue;
      const int B = kv_.block_tokens_;
      size_t at = kv_.index(s.blocks[s.pos / B], il, s.pos % B) + size_t(k0);
      if (kv_.f16_) {
        k_.to_f16(k + k0, &kv_.k16_[at], k1 - k0);
        k_.to_f16(v + k0, &kv_.v16_[at], k1 - k0);
      } else {
        std::memcpy(&kv_.k32_[at], k + k0, size_t(k1 - k0) * 4);
        std::memcpy(&kv_.v32_[at], v + k0, size_t(k1 - k0) * 4);
      }
    }
  }

  // Causal attention for (token, head) units split over threads; head h reads KV head h / group.
  // window > 0 (sliding layers): a query at position p sees positions (p - window, p] only.
  // With the F16 cache, q and the probabilities are rounded to f16 first, as llama.cpp does.
  void attention(int tid, int nth, std::span<const token_slot> slots, int il, int window) {
    const int Q = hp_.q_dim(), hd = hp_.head_dim, group = hp_.n_head / hp_.n_head_kv;
    const float scale = hp_.attn_scale;
    const size_t stride = size_t(hp_.kv_dim());
    auto [u0, u1] = split_range(int(slots.size()) * hp_.n_head, tid, nth);
    float* sc = scores_[size_t(tid)].data();
    float* qr = qround_[size_t(tid)].data();
    for (int u = u0; u < u1; ++u) {
      const int t = u / hp_.n_head, h = u % hp_.n_head, g = h / group;
      const token_slot& s = slots[size_t(t)];
      const float* q = qkv_.data() + size_t(t) * qkv_ld_ + size_t(h) * hd;
      float* out = att_.data() + size_t(t) * Q + size_t(h) * hd;
      const int n = s.pos + 1;
      const int first = window > 0 ? std::max(0, n - window) : 0;  // positions [first, n) are visible
      const int B = kv_.block_tokens_;
      const size_t off = size_t(g) * hd;  // this KV head's columns within a row
      // Scores run by run of consecutive positions within one block (a block's rows are contiguous), softmax
      // over all visible positions, then the mix run by run. sc[j] holds position first + j.
      auto run_end = [&](int j) { return std::min(n, (j / B + 1) * B); };
      auto at = [&](int j) { return kv_.index(s.blocks[j / B], il, j % B) + off; };
      const int m = n - first;
      if (kv_.f16_) {
        std::memcpy(qr, q, size_t(hd) * 4);
        k_.round_f16(qr, hd);
        for (int j = first; j < n; j = run_end(j))
          k_.attn_scores_f16(qr, &kv_.k16_[at(j)], stride, run_end(j) - j, hd, sc + (j - first));
      } else {
        for (int j = first; j < n; ++j) sc[j - first] = k_.dot_f32(q, &kv_.k32_[at(j)], hd);
      }
      float mx = -INFINITY;
      for (int j = 0; j < m; ++j) {
        sc[j] *= scale;
        mx = std::max(mx, sc[j]);
      }
      double sum = 0.0;
      for (int j = 0; j < m; ++j) {
        sc[j] = std::exp(sc[j] - mx);
        sum += sc[j];
      }
      const float inv = float(1.0 / sum);
      for (int j = 0; j < m; ++j) sc[j] *= inv;
      std::memset(out, 0, size_t(hd) * 4);
      if (kv_.f16_) {
        k_.round_f16(sc, m);
        for (int j = first; j < n; j = run_end(j))
          k_.attn_mix_f16(sc + (j - first), &kv_.v16_[at(j)], stride, run_end(j) - j, hd, out);
      } else {
        for (int j = first; j < n; ++j) k_.axpy_f32(sc[j - first], &kv_.v32_[at(j)], out, hd);
      }
    }
  }

  const llama_model& m_;
  const llama_hparams& hp_;
  const kernel_table& k_;
  packed_weights packed_;  // repacked Q4_1/Q8_0 matrices when k_ reads them (replace the map's bytes)
  thread_pool pool_;
  bool kv_f16_;
  kv_pool kv_;
  int qkv_ld_ = 0;
  std::vector<double> inv_freq_, inv_freq_swa_;  // (n_rot / 2): every layer's, sliding layers' (if different)
  std::vector<float> x_;                        // (T, n_embd) residual stream
  std::vector<float> xn_;                       // (T, max(n_embd, q_dim)) normalised input of the next matmul
  std::vector<block_q8_act> xq_;                // xn_ (or the FFN hidden state) quantized
  std::vector<float> qkv_;                      // (T, q_dim + 2 kv_dim)
  std::vector<float> att_;                      // (T, q_dim) attention output
  std::vector<float> gate_, up_;                // (T, n_ff)
  std::vector<float> rope_, rope_swa_;          // (T, n_rot) cos/sin pairs, for inv_freq_ and inv_freq_swa_
  std::vector<float> post_;                     // (T, n_embd) output of a projection before its post-norm
  std::vector<std::vector<float>> scores_;      // per thread (positions)
  std::vector<std::vector<float>> qround_;      // per thread (head_dim): q rounded to f16
  std::vector<std::vector<float>> xn_local_;    // per thread (local_prepare_tokens, max dim)
  std::vector<std::vector<block_q8_act>> xq_local_;
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend(const llama_model& m, int threads, kv_type kv,
                                          const kernel_table* kernels) {
  return std::make_unique<cpu_backend>(m, threads, kv, kernels);
}

std::vector<float> logits_for_sequence(backend& b, std::span<const token_id> tokens) {
  const int bt = b.kv_block_tokens();
  const int need = (int(tokens.size()) + bt - 1) / bt;
  if (b.kv_blocks() < need) b.reserve_kv_blocks(need);
  std::vector<kv_block_id> blocks(static_cast<size_t>(need));
  for (int i = 0; i < need; ++i) blocks[size_t(i)] = i;
  batch_seq s;
  s.blocks = blocks;
  s.tokens = tokens;
  s.pos0 = 0;
  s.want = batch_seq::logits::all;
  std::vector<float> logits;
  b.forward(std::span<const batch_seq>(&s, 1), logits);
  return logits;
}

}  // namespace sluice::engine
