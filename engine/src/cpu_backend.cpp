// The llama forward pass on CPU, one block per function as in the paper: RMSNorm -> Q/K/V -> RoPE ->
// causal GQA attention over the KV cache -> output projection + residual -> RMSNorm -> SwiGLU FFN +
// residual; then the final norm and the vocabulary projection for the positions that need logits.
// A whole step is one thread_pool::run(); work is split by rows (matmuls) or tokens/heads, with a
// barrier between dependent phases. Weights are read in place (quantized) from the mapped file;
// activations are quantized to Q8 once per row for the integer dot products.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend.h"
#include "kernels.h"
#include "thread_pool.h"

namespace sluice::engine {
namespace {

constexpr int max_step_tokens = 256;  // tokens per internal chunk (bounds the scratch buffers)

class cpu_kv_cache final : public kv_cache {
 public:
  cpu_kv_cache(int n_layer, int capacity, int kv_dim, bool f16)
      : capacity_(capacity), kv_dim_(kv_dim), f16_(f16) {
    size_t n = size_t(n_layer) * size_t(capacity) * size_t(kv_dim);
    bytes_ = 2 * n * (f16 ? 2 : 4);
    if (f16) { k16_.reset(new uint16_t[n]); v16_.reset(new uint16_t[n]); }
    else { k32_.reset(new float[n]); v32_.reset(new float[n]); }
  }
  int capacity_tokens() const override { return capacity_; }
  size_t bytes() const override { return bytes_; }
  size_t index(int layer, int pos) const { return (size_t(layer) * size_t(capacity_) + size_t(pos)) * size_t(kv_dim_); }

  int capacity_, kv_dim_;
  bool f16_;
  size_t bytes_ = 0;
  // (n_layer, capacity, kv_dim) each
  std::unique_ptr<uint16_t[]> k16_, v16_;
  std::unique_ptr<float[]> k32_, v32_;
};

struct token_slot {
  token_id token;
  int pos;
  cpu_kv_cache* kv;
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
      : m_(m), hp_(m.hp), k_(kernels ? *kernels : cpu_kernels()), pool_(threads), kv_f16_(kv == kv_type::f16) {
    const int T = max_step_tokens;
    qkv_ld_ = hp_.q_dim() + 2 * hp_.kv_dim();
    x_.resize(size_t(T) * hp_.n_embd);
    xn_.resize(size_t(T) * std::max({hp_.n_embd, hp_.q_dim(), hp_.n_ff}));
    xq_.resize(size_t(T) * (std::max({hp_.n_embd, hp_.q_dim(), hp_.n_ff}) / qk + 1));
    qkv_.resize(size_t(T) * qkv_ld_);
    att_.resize(size_t(T) * hp_.q_dim());
    gate_.resize(size_t(T) * hp_.n_ff);
    up_.resize(size_t(T) * hp_.n_ff);
    rope_.resize(size_t(T) * hp_.n_rot);
    scores_.resize(size_t(pool_.size()));
    inv_freq_.resize(size_t(hp_.n_rot / 2));
    for (int i = 0; i < hp_.n_rot / 2; ++i) {
      double f = std::pow(double(hp_.rope_freq_base), -2.0 * i / hp_.n_rot);
      if (!m.rope_freq_factors.empty()) f /= m.rope_freq_factors[size_t(i)];
      inv_freq_[size_t(i)] = f;
    }
  }

  const char* name() const override { return k_.name; }

  std::unique_ptr<kv_cache> new_cache(int capacity_tokens) override {
    return std::make_unique<cpu_kv_cache>(hp_.n_layer, capacity_tokens, hp_.kv_dim(), kv_f16_);
  }

  void forward(std::span<const batch_seq> batch, std::vector<float>& logits) override {
    std::vector<token_slot> slots;
    int rows = 0;
    for (auto& s : batch) {
      auto* kv = static_cast<cpu_kv_cache*>(s.kv);
      int n = int(s.tokens.size());
      for (int i = 0; i < n; ++i) {
        int row = -1;
        if (s.want == batch_seq::logits::all || (s.want == batch_seq::logits::last && i == n - 1)) row = rows++;
        slots.push_back({s.tokens[size_t(i)], s.pos0 + i, kv, row});
      }
    }
    logits.resize(size_t(rows) * hp_.n_vocab);
    for (size_t b = 0; b < slots.size(); b += max_step_tokens) {
      size_t e = std::min(slots.size(), b + max_step_tokens);
      run_chunk(std::span<const token_slot>(slots.data() + b, e - b), logits.data());
    }
  }

 private:
  // Matmul over rows [r0, r1) of w for all nt tokens, input chosen by the weight type.
  void matmul(const weight& w, int r0, int r1, int nt, const float* xf, int ldxf, const block_q8_act* xq,
              int ldxq, float* y, int ldy, bool acc) {
    if (r0 >= r1 || nt == 0) return;
    matmul_args a;
    a.type = w.type; a.w = w.data; a.row_bytes = w.row_bytes; a.k = w.cols;
    a.r0 = r0; a.r1 = r1; a.nt = nt;
    a.xf = xf; a.ldxf = ldxf; a.xq = xq; a.ldxq = ldxq;
    a.y = y; a.ldy = ldy; a.accumulate = acc;
    k_.matmul(a);
  }

  // Normalises (or copies) nt rows of `in` (ld n) into xn_ and quantizes them into xq_ when a quantized
  // weight will read them. Split over tokens.
  void prepare_rows(int tid, int nth, int nt, const float* in, int n, const float* norm_w, const weight& w) {
    const bool quant = needs_q8_activations(w.type);
    const tensor_type round_to = w.type == tensor_type::f16 || w.type == tensor_type::bf16 ? w.type : tensor_type::f32;
    auto [t0, t1] = split_range(nt, tid, nth);
    int nb = n / qk;
    for (int t = t0; t < t1; ++t) {
      float* dst = xn_.data() + size_t(t) * n;
      if (norm_w) rms_norm(in + size_t(t) * n, norm_w, dst, n, hp_.rms_eps);
      else std::memcpy(dst, in + size_t(t) * n, size_t(n) * 4);
      if (quant) k_.quantize_q8(dst, xq_.data() + size_t(t) * nb, n);
      else if (round_to != tensor_type::f32) round_row(dst, n, round_to);
    }
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
    const int E = hp_.n_embd, Q = hp_.q_dim(), KV = hp_.kv_dim(), F = hp_.n_ff, hd = hp_.head_dim;
    int max_pos = 0;
    for (auto& s : slots) max_pos = std::max(max_pos, s.pos);
    for (auto& sc : scores_) if (int(sc.size()) < max_pos + 1) sc.resize(size_t(max_pos) + 1);

    pool_.run([&](int tid, int nth) {
      // Embeddings and RoPE angles (cos, sin interleaved per pair), split over tokens.
      {
        auto [t0, t1] = split_range(nt, tid, nth);
        for (int t = t0; t < t1; ++t) {
          const token_slot& s = slots[size_t(t)];
          dequantize_row(m_.tok_embd.type, m_.tok_embd.data + size_t(s.token) * m_.tok_embd.row_bytes,
                         x_.data() + size_t(t) * E, E);
          float* r = rope_.data() + size_t(t) * hp_.n_rot;
          for (int i = 0; i < hp_.n_rot / 2; ++i) {
            double th = double(s.pos) * inv_freq_[size_t(i)];
            r[2 * i] = float(std::cos(th));
            r[2 * i + 1] = float(std::sin(th));
          }
        }
      }
      pool_.barrier();
      for (int il = 0; il < hp_.n_layer; ++il) {
        const llama_layer& L = m_.layers[size_t(il)];
        // Attention block.
        prepare_rows(tid, nth, nt, x_.data(), E, L.attn_norm.data(), L.wq);
        pool_.barrier();
        {
          const int nbE = E / qk;
          auto [q0, q1] = split_range(Q, tid, nth, 8);
          matmul(L.wq, q0, q1, nt, xn_.data(), E, xq_.data(), nbE, qkv_.data(), qkv_ld_, false);
          auto [k0, k1] = split_range(KV, tid, nth, 8);
          matmul(L.wk, k0, k1, nt, xn_.data(), E, xq_.data(), nbE, qkv_.data() + Q, qkv_ld_, false);
          matmul(L.wv, k0, k1, nt, xn_.data(), E, xq_.data(), nbE, qkv_.data() + Q + KV, qkv_ld_, false);
        }
        pool_.barrier();
        rope_and_store(tid, nth, slots, il);
        pool_.barrier();
        attention(tid, nth, slots, il);
        pool_.barrier();
        prepare_rows(tid, nth, nt, att_.data(), Q, nullptr, L.wo);
        pool_.barrier();
        {
          auto [r0, r1] = split_range(E, tid, nth, 8);
          matmul(L.wo, r0, r1, nt, xn_.data(), Q, xq_.data(), Q / qk, x_.data(), E, true);
        }
        pool_.barrier();
        // Feed-forward block (SwiGLU).
        prepare_rows(tid, nth, nt, x_.data(), E, L.ffn_norm.data(), L.w_gate);
        pool_.barrier();
        {
          auto [r0, r1] = split_range(F, tid, nth, 8);
          matmul(L.w_gate, r0, r1, nt, xn_.data(), E, xq_.data(), E / qk, gate_.data(), F, false);
          matmul(L.w_up, r0, r1, nt, xn_.data(), E, xq_.data(), E / qk, up_.data(), F, false);
          for (int t = 0; t < nt; ++t) {
            float* g = gate_.data() + size_t(t) * F;
            const float* u = up_.data() + size_t(t) * F;
            for (int i = r0; i < r1; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
          }
        }
        pool_.barrier();
        prepare_rows(tid, nth, nt, gate_.data(), F, nullptr, L.w_down);
        pool_.barrier();
        {
          auto [r0, r1] = split_range(E, tid, nth, 8);
          matmul(L.w_down, r0, r1, nt, xn_.data(), F, xq_.data(), F / qk, x_.data(), E, true);
        }
        pool_.barrier();
      }
      // Final norm and vocabulary projection, only for rows that want logits (compacted into xn_).
      int n_out = 0;
      for (auto& s : slots) n_out += s.logits_row >= 0;
      if (n_out == 0) return;
      {
        auto [t0, t1] = split_range(nt, tid, nth);
        bool quant = needs_q8_activations(m_.output.type);
        for (int t = t0; t < t1; ++t) {
          int j = slot_out_index(slots, t);
          if (j < 0) continue;
          float* dst = xn_.data() + size_t(j) * E;
          rms_norm(x_.data() + size_t(t) * E, m_.output_norm.data(), dst, E, hp_.rms_eps);
          if (quant) k_.quantize_q8(dst, xq_.data() + size_t(j) * (E / qk), E);
          else if (m_.output.type != tensor_type::f32) round_row(dst, E, m_.output.type);
        }
      }
      pool_.barrier();
      // Rows of the output matrix split over threads; outputs go to their logits rows.
      auto [r0, r1] = split_range(hp_.n_vocab, tid, nth, 8);
      int j = 0;
      for (auto& s : slots) {
        if (s.logits_row < 0) continue;
        matmul(m_.output, r0, r1, 1, xn_.data() + size_t(j) * E, E, xq_.data() + size_t(j) * (E / qk), E / qk,
               logits + size_t(s.logits_row) * hp_.n_vocab, hp_.n_vocab, false);
        ++j;
      }
    });
    (void)hd;
  }

  static int slot_out_index(std::span<const token_slot> slots, int t) {
    if (slots[size_t(t)].logits_row < 0) return -1;
    int j = 0;
    for (int i = 0; i < t; ++i) j += slots[size_t(i)].logits_row >= 0;
    return j;
  }

  void rope_rotate(float* v, const float* cs) const {
    for (int i = 0; i < hp_.n_rot / 2; ++i) {
      float c = cs[2 * i], s = cs[2 * i + 1], a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * c - b * s;
      v[2 * i + 1] = a * s + b * c;
    }
  }

  void rope_and_store(int tid, int nth, std::span<const token_slot> slots, int il) {
    const int Q = hp_.q_dim(), KV = hp_.kv_dim(), hd = hp_.head_dim;
    auto [t0, t1] = split_range(int(slots.size()), tid, nth);
    for (int t = t0; t < t1; ++t) {
      const token_slot& s = slots[size_t(t)];
      float* q = qkv_.data() + size_t(t) * qkv_ld_;
      float* k = q + Q;
      const float* v = k + KV;
      const float* cs = rope_.data() + size_t(t) * hp_.n_rot;
      for (int h = 0; h < hp_.n_head; ++h) rope_rotate(q + h * hd, cs);
      for (int h = 0; h < hp_.n_head_kv; ++h) rope_rotate(k + h * hd, cs);
      size_t at = s.kv->index(il, s.pos);
      if (s.kv->f16_) {
        for (int i = 0; i < KV; ++i) {
          s.kv->k16_[at + size_t(i)] = f32_to_fp16(k[i]);
          s.kv->v16_[at + size_t(i)] = f32_to_fp16(v[i]);
        }
      } else {
        std::memcpy(&s.kv->k32_[at], k, size_t(KV) * 4);
        std::memcpy(&s.kv->v32_[at], v, size_t(KV) * 4);
      }
    }
  }

  void attention(int tid, int nth, std::span<const token_slot> slots, int il) {
    const int Q = hp_.q_dim(), hd = hp_.head_dim, group = hp_.n_head / hp_.n_head_kv;
    const float scale = 1.0f / std::sqrt(float(hd));
    auto [u0, u1] = split_range(int(slots.size()) * hp_.n_head, tid, nth);
    float* sc = scores_[size_t(tid)].data();
    for (int u = u0; u < u1; ++u) {
      int t = u / hp_.n_head, h = u % hp_.n_head, g = h / group;
      const token_slot& s = slots[size_t(t)];
      const float* q = qkv_.data() + size_t(t) * qkv_ld_ + size_t(h) * hd;
      float* out = att_.data() + size_t(t) * Q + size_t(h) * hd;
      const int n = s.pos + 1;
      float qr[256];
      if (s.kv->f16_ && hd <= 256) {  // llama.cpp rounds Q to f16 for the f16 K cache
        for (int i = 0; i < hd; ++i) qr[i] = fp16_to_f32(f32_to_fp16(q[i]));
        q = qr;
      }
      size_t base = s.kv->index(il, 0) + size_t(g) * hd;
      const size_t stride = size_t(hp_.kv_dim());
      float mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        float d = s.kv->f16_ ? k_.dot_f16(q, &s.kv->k16_[base + j * stride], hd)
                             : k_.dot_f32(q, &s.kv->k32_[base + j * stride], hd);
        sc[j] = d * scale;
        mx = std::max(mx, sc[j]);
      }
      float sum = 0.0f;
      for (int j = 0; j < n; ++j) { sc[j] = std::exp(sc[j] - mx); sum += sc[j]; }
      float inv = 1.0f / sum;
      if (s.kv->f16_)  // and the probabilities, for the f16 V cache
        for (int j = 0; j < n; ++j) { sc[j] = fp16_to_f32(f32_to_fp16(sc[j] * inv)); }
      if (s.kv->f16_) inv = 1.0f;
      std::memset(out, 0, size_t(hd) * 4);
      for (int j = 0; j < n; ++j) {
        if (s.kv->f16_) k_.axpy_f16(sc[j] * inv, &s.kv->v16_[base + j * stride], out, hd);
        else k_.axpy_f32(sc[j] * inv, &s.kv->v32_[base + j * stride], out, hd);
      }
    }
  }

  const llama_model& m_;
  const llama_hparams& hp_;
  const kernel_table& k_;
  thread_pool pool_;
  bool kv_f16_;
  int qkv_ld_ = 0;
  std::vector<double> inv_freq_;                // (n_rot / 2)
  std::vector<float> x_;                        // (T, n_embd) residual stream
  std::vector<float> xn_;                       // (T, max(n_embd, q_dim)) normalised input of the next matmul
  std::vector<block_q8_act> xq_;                // xn_ (or the FFN hidden state) quantized
  std::vector<float> qkv_;                      // (T, q_dim + 2 kv_dim)
  std::vector<float> att_;                      // (T, q_dim) attention output
  std::vector<float> gate_, up_;                // (T, n_ff)
  std::vector<float> rope_;                     // (T, n_rot) cos/sin pairs
  std::vector<std::vector<float>> scores_;      // per thread (positions)
};

}  // namespace

std::unique_ptr<backend> make_cpu_backend(const llama_model& m, int threads, kv_type kv,
                                          const kernel_table* kernels) {
  return std::make_unique<cpu_backend>(m, threads, kv, kernels);
}

std::vector<float> logits_for_sequence(backend& b, std::span<const token_id> tokens) {
  auto kv = b.new_cache(int(tokens.size()));
  batch_seq s;
  s.kv = kv.get();
  s.tokens = tokens;
  s.pos0 = 0;
  s.want = batch_seq::logits::all;
  std::vector<float> logits;
  b.forward(std::span<const batch_seq>(&s, 1), logits);
  return logits;
}

}  // namespace sluice::engine
