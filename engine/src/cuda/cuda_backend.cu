// See cuda_backend.h. One forward step as a sequence of kernels on one stream:
//   embed -> per layer: rms_norm+quantize -> Q/K/V matvec -> rope+store KV -> attention -> O matvec (+= x)
//            -> rms_norm+quantize -> gate/up matvec -> SwiGLU -> quantize -> down matvec (+= x)
//   -> gather logits rows -> rms_norm+quantize -> output matvec -> copy logits to the host.
// Weights are uploaded once as they are in the file (quantized blocks unchanged). Activations for a quantized
// weight are quantized to Q8 per 32 values exactly as kernels_scalar.cpp does (same rounding, fp16-rounded
// scale), and the dot products are integer sums per block, so the results follow the CPU backend's closely.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/cuda_backend.h"
#include "cuda/cuda_plan.h"
#include "kernels.h"

namespace sluice::engine::cuda {

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// ---- device helpers ---------------------------------------------------------------------------------------

__device__ inline float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ inline float bf2f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }

__device__ inline uint16_t ld16(const uint8_t* p) { return uint16_t(p[0] | (uint16_t(p[1]) << 8)); }
__device__ inline uint32_t ld32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

struct q8_act {  // the device copy of block_q8_act (same layout)
  float d, s;
  int8_t qs[32];
};
static_assert(sizeof(q8_act) == sizeof(block_q8_act));

__device__ inline void k_scale_min_dev(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// dot(unit u of a quantized row, activation block a): unit = 32 weights (a sub-block of a K-quant super-block).
__device__ float unit_dot_q(int type, const uint8_t* row, int u, const q8_act& a) {
  int isum = 0;
  switch (type) {
    case int(tensor_type::q8_0): {
      const uint8_t* b = row + size_t(u) * 34;
      for (int i = 0; i < 32; ++i) isum += int(int8_t(b[2 + i])) * int(a.qs[i]);
      return h2f(ld16(b)) * a.d * float(isum);
    }
    case int(tensor_type::q4_0): {
      const uint8_t* b = row + size_t(u) * 18;
      for (int i = 0; i < 16; ++i) isum += (int(b[2 + i] & 0xF) - 8) * a.qs[i] + (int(b[2 + i] >> 4) - 8) * a.qs[i + 16];
      return h2f(ld16(b)) * a.d * float(isum);
    }
    case int(tensor_type::q4_1): {
      const uint8_t* b = row + size_t(u) * 20;
      for (int i = 0; i < 16; ++i) isum += int(b[4 + i] & 0xF) * a.qs[i] + int(b[4 + i] >> 4) * a.qs[i + 16];
      return h2f(ld16(b)) * a.d * float(isum) + h2f(ld16(b + 2)) * a.s;
    }
    case int(tensor_type::q5_0):
    case int(tensor_type::q5_1): {
      const bool one = type == int(tensor_type::q5_1);
      const uint8_t* b = row + size_t(u) * (one ? 24 : 22);
      const uint8_t* qhp = b + (one ? 4 : 2);
      const uint8_t* qs = qhp + 4;
      const uint32_t qh = ld32(qhp);
      for (int j = 0; j < 16; ++j) {
        int lo = int((qs[j] & 0xF) | (((qh >> j) & 1u) << 4)), hi = int((qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
        if (!one) lo -= 16, hi -= 16;
        isum += lo * a.qs[j] + hi * a.qs[j + 16];
      }
      return one ? h2f(ld16(b)) * a.d * float(isum) + h2f(ld16(b + 2)) * a.s : h2f(ld16(b)) * a.d * float(isum);
    }
    case int(tensor_type::q4_k):
    case int(tensor_type::q5_k): {
      const bool five = type == int(tensor_type::q5_k);
      const int sb = u / 8, j = u % 8;
      const uint8_t* b = row + size_t(sb) * (five ? 176 : 144);
      const uint8_t* scales = b + 4;
      const uint8_t* qh = five ? b + 16 : nullptr;
      const uint8_t* qs = b + (five ? 48 : 16) + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) {
        int v = (qs[l] >> shift) & 0xF;
        if (five) v |= ((qh[l] >> j) & 1) << 4;
        isum += v * a.qs[l];
      }
      int sc, m;
      k_scale_min_dev(j, scales, sc, m);
      return h2f(ld16(b)) * (float(sc) * a.d * float(isum)) - h2f(ld16(b + 2)) * (float(m) * a.s);
    }
    case int(tensor_type::q6_k): {
      const int sb = u / 8, half = (u % 8) / 4, part = u % 4;
      const uint8_t* b = row + size_t(sb) * 210;
      const uint8_t* lo = b + 64 * half + (part % 2) * 32;
      const uint8_t* qh = b + 128 + 32 * half;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
      const int nshift = (part / 2) * 4, hshift = part * 2;
      int s0 = 0, s1 = 0;
      for (int l = 0; l < 32; ++l) {
        const int v = int(((lo[l] >> nshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
        if (l < 16) s0 += v * a.qs[l];
        else s1 += v * a.qs[l];
      }
      return h2f(ld16(b + 208)) * (a.d * float(int(sc[2 * part]) * s0 + int(sc[2 * part + 1]) * s1));
    }
    default:
      return 0.0f;
  }
}

// Element i of a float-typed row (F32, F16, BF16).
__device__ inline float float_elem(int type, const uint8_t* row, int i) {
  if (type == int(tensor_type::f32)) return reinterpret_cast<const float*>(row)[i];
  const uint16_t h = ld16(row + 2 * size_t(i));
  return type == int(tensor_type::f16) ? h2f(h) : bf2f(h);
}

// Element i of any supported row type (embedding lookups).
__device__ float dequant_elem(int type, const uint8_t* row, int i) {
  const int u = i / 32, l = i % 32;
  switch (type) {
    case int(tensor_type::f32):
    case int(tensor_type::f16):
    case int(tensor_type::bf16): return float_elem(type, row, i);
    case int(tensor_type::q8_0): { const uint8_t* b = row + size_t(u) * 34; return h2f(ld16(b)) * float(int8_t(b[2 + l])); }
    case int(tensor_type::q4_0): {
      const uint8_t* b = row + size_t(u) * 18;
      const int q = l < 16 ? (b[2 + l] & 0xF) : (b[2 + l - 16] >> 4);
      return float(q - 8) * h2f(ld16(b));
    }
    case int(tensor_type::q4_1): {
      const uint8_t* b = row + size_t(u) * 20;
      const int q = l < 16 ? (b[4 + l] & 0xF) : (b[4 + l - 16] >> 4);
      return float(q) * h2f(ld16(b)) + h2f(ld16(b + 2));
    }
    case int(tensor_type::q5_0):
    case int(tensor_type::q5_1): {
      const bool one = type == int(tensor_type::q5_1);
      const uint8_t* b = row + size_t(u) * (one ? 24 : 22);
      const uint8_t* qhp = b + (one ? 4 : 2);
      const uint8_t* qs = qhp + 4;
      const int nib = l < 16 ? (qs[l] & 0xF) : (qs[l - 16] >> 4);
      const int q = nib | int(((ld32(qhp) >> l) & 1u) << 4);
      return one ? float(q) * h2f(ld16(b)) + h2f(ld16(b + 2)) : float(q - 16) * h2f(ld16(b));
    }
    case int(tensor_type::q4_k):
    case int(tensor_type::q5_k): {
      const bool five = type == int(tensor_type::q5_k);
      const int sb = i / 256, j = (i % 256) / 32;
      const uint8_t* b = row + size_t(sb) * (five ? 176 : 144);
      const uint8_t* qs = b + (five ? 48 : 16) + 32 * (j / 2);
      int v = (qs[l] >> ((j % 2) * 4)) & 0xF;
      if (five && ((b[16 + l] >> j) & 1)) v += 16;
      int sc, m;
      k_scale_min_dev(j, b + 4, sc, m);
      return h2f(ld16(b)) * float(sc) * float(v) - h2f(ld16(b + 2)) * float(m);
    }
    case int(tensor_type::q6_k): {
      const int sb = i / 256, e = i % 256, half = e / 128, part = (e % 128) / 32;
      const uint8_t* b = row + size_t(sb) * 210;
      const uint8_t* lo = b + 64 * half + (part % 2) * 32;
      const uint8_t* qh = b + 128 + 32 * half;
      const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * half;
      const int q = int(((lo[l] >> ((part / 2) * 4)) & 0xF) | (((qh[l] >> (part * 2)) & 3) << 4)) - 32;
      return h2f(ld16(b + 208)) * float(sc[2 * part + l / 16]) * float(q);
    }
    default:
      return 0.0f;
  }
}

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over a block of up to 1024 threads; every thread gets the result.
template <bool is_max>
__device__ float block_reduce(float v, float* shared32) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  v = is_max ? warp_max(v) : warp_sum(v);
  __syncthreads();
  if (lane == 0) shared32[warp] = v;
  __syncthreads();
  float r = lane < nw ? shared32[lane] : (is_max ? -INFINITY : 0.0f);
  r = is_max ? warp_max(r) : warp_sum(r);
  return r;
}

// ---- kernels --------------------------------------------------------------------------------------------

__global__ void embed_kernel(int type, const uint8_t* table, size_t row_bytes, const int32_t* tokens, int n,
                             float* x) {
  const int t = blockIdx.x;
  const uint8_t* row = table + size_t(tokens[t]) * row_bytes;
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[size_t(t) * n + i] = dequant_elem(type, row, i);
}

// out[t] = rms_norm(in[rows[t]]) * w (w null: a copy), then either quantized to Q8 (q8 non-null) or rounded to
// the weight's float type (round: 1 f16, 2 bf16). rows null: row t.
__global__ void norm_prepare_kernel(const float* in, const int32_t* rows, const float* w, float eps, int n, float* out,
                                    q8_act* q8, int round) {
  __shared__ float red[32];
  const int t = blockIdx.x;
  const float* x = in + size_t(rows ? rows[t] : t) * n;
  float* y = out + size_t(t) * n;
  float scale = 1.0f;
  if (w) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += x[i] * x[i];
    ss = block_reduce<false>(ss, red);
    scale = 1.0f / sqrtf(ss / float(n) + eps);
  }
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    float v = w ? x[i] * scale * w[i] : x[i];
    if (round == 1) v = __half2float(__float2half_rn(v));
    if (round == 2) v = __uint_as_float((__float_as_uint(v) + 0x7fffu + ((__float_as_uint(v) >> 16) & 1u)) & 0xffff0000u);
    y[i] = v;
  }
  if (!q8) return;
  __syncthreads();
  // One warp per block of 32: amax, d = amax / 127 rounded through fp16, q = round-half-even(x * 127 / amax).
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  for (int b = warp; b < n / 32; b += nw) {
    const float v = y[b * 32 + lane];
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const int q = __float2int_rn(v * id);
    const float sum = warp_sum(float(q));
    q8_act& o = q8[size_t(t) * (n / 32) + b];
    o.qs[lane] = int8_t(q);
    if (lane == 0) {
      o.d = __half2float(__float2half_rn(d));
      o.s = __half2float(__float2half_rn(d * sum));
    }
  }
}

// y[t * ldy + r] (+)= dot(W row r, x of token t): one warp per row.
__global__ void matvec_kernel(int type, const uint8_t* w, size_t row_bytes, int rows, int k, const float* xf,
                              const q8_act* xq, float* y, int ldy, bool accumulate) {
  const int lane = threadIdx.x % 32;
  const int r = blockIdx.x * matvec_rows_per_block + threadIdx.x / 32;
  const int t = blockIdx.y;
  if (r >= rows) return;
  const uint8_t* row = w + size_t(r) * row_bytes;
  float sum = 0.0f;
  if (type == int(tensor_type::f32) || type == int(tensor_type::f16) || type == int(tensor_type::bf16)) {
    const float* x = xf + size_t(t) * k;
    for (int i = lane; i < k; i += 32) sum += float_elem(type, row, i) * x[i];
  } else {
    const q8_act* x = xq + size_t(t) * (k / 32);
    for (int u = lane; u < k / 32; u += 32) sum += unit_dot_q(type, row, u, x[u]);
  }
  sum = warp_sum(sum);
  if (lane == 0) {
    float& out = y[size_t(t) * ldy + r];
    out = accumulate ? out + sum : sum;
  }
}

// Rotates Q and K of each token (adjacent pairs of the first n_rot dimensions of every head) and writes K and V
// into the token's KV slot: block table[pos / B], slot pos % B, layer `layer`; KV pool layout per block
// (layer, slot, kv_dim) for keys, then the same for values.
__global__ void rope_store_kernel(float* qkv, int ld, int q_dim, int kv_dim, int head_dim, int n_rot,
                                  const double* inv_freq, const int32_t* positions, const int32_t* seq_of_token,
                                  const int32_t* table_offset, const int32_t* blocks, int block_tokens, int n_layer,
                                  int layer, __half* pool) {
  const int t = blockIdx.x;
  float* q = qkv + size_t(t) * ld;
  float* kk = q + q_dim;
  const float* v = kk + kv_dim;
  const int pos = positions[t];
  for (int p = threadIdx.x; p < (q_dim + kv_dim) / 2; p += blockDim.x) {
    const int r = 2 * p;
    float* vec = r < q_dim ? q : kk;
    const int rr = r < q_dim ? r : r - q_dim;
    const int j = rr % head_dim;
    if (j >= n_rot) continue;
    const double th = double(pos) * inv_freq[j / 2];  // (in double, as the CPU backend: positions reach 10^5)
    const float c = float(cos(th)), s = float(sin(th));
    const float a = vec[rr], b = vec[rr + 1];
    vec[rr] = a * c - b * s;
    vec[rr + 1] = a * s + b * c;
  }
  __syncthreads();
  const int blk = blocks[table_offset[seq_of_token[t]] + pos / block_tokens];
  const size_t block_elems = size_t(n_layer) * 2 * size_t(block_tokens) * size_t(kv_dim);
  __half* kdst = pool + size_t(blk) * block_elems + (size_t(layer) * block_tokens + size_t(pos % block_tokens)) * kv_dim;
  __half* vdst = kdst + size_t(n_layer) * block_tokens * kv_dim;
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    kdst[i] = __float2half_rn(kk[i]);
    vdst[i] = __float2half_rn(v[i]);
  }
}

// Causal attention of one (token, head): scores over positions [0, pos], softmax, mix of values. Q is rounded to
// f16 first (the CPU backend and llama.cpp multiply f16 keys with f16-rounded queries).
__global__ void attention_kernel(const float* qkv, int ld, int q_dim, int kv_dim, int head_dim, int group,
                                 const int32_t* positions, const int32_t* seq_of_token, const int32_t* table_offset,
                                 const int32_t* blocks, int block_tokens, int n_layer, int layer, const __half* pool,
                                 float* scores, int max_positions, float* out) {
  extern __shared__ float q_shared[];  // head_dim
  __shared__ float red[32];
  const int t = blockIdx.x, h = blockIdx.y, n = positions[t] + 1;
  const int g = h / group;
  const float* q = qkv + size_t(t) * ld + size_t(h) * head_dim;
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) q_shared[i] = __half2float(__float2half_rn(q[i]));
  __syncthreads();
  const int32_t* table = blocks + table_offset[seq_of_token[t]];
  const size_t block_elems = size_t(n_layer) * 2 * size_t(block_tokens) * size_t(kv_dim);
  float* sc = scores + (size_t(t) * gridDim.y + h) * size_t(max_positions);
  const float scale = 1.0f / sqrtf(float(head_dim));
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const __half* kr = pool + size_t(table[j / block_tokens]) * block_elems +
                       (size_t(layer) * block_tokens + size_t(j % block_tokens)) * kv_dim + size_t(g) * head_dim;
    float s = 0.0f;
    for (int i = 0; i < head_dim; ++i) s += q_shared[i] * __half2float(kr[i]);
    s *= scale;
    sc[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_reduce<true>(mx, red);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    const float e = expf(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  sum = block_reduce<false>(sum, red);
  __syncthreads();  // (every score written before any thread mixes)
  const float inv = 1.0f / sum;
  for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
    float acc = 0.0f;
    for (int j = 0; j < n; ++j) {
      const __half* vr = pool + size_t(table[j / block_tokens]) * block_elems +
                         (size_t(n_layer) * block_tokens + size_t(layer) * block_tokens + size_t(j % block_tokens)) * kv_dim +
                         size_t(g) * head_dim;
      acc += sc[j] * __half2float(vr[i]);
    }
    out[size_t(t) * q_dim + size_t(h) * head_dim + i] = acc * inv;
  }
}

__global__ void swiglu_kernel(float* gate, const float* up, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void copy_block_kernel(__half* pool, size_t block_elems, int n_layer, int block_tokens, int kv_dim,
                                  int from, int to, int n_tokens) {
  // For each layer and each of keys/values, slots [0, n_tokens).
  const size_t per = size_t(n_tokens) * kv_dim;
  for (size_t e = blockIdx.x * size_t(blockDim.x) + threadIdx.x; e < size_t(n_layer) * 2 * per;
       e += size_t(gridDim.x) * blockDim.x) {
    const size_t part = e / per, within = e % per;  // part = kv * n_layer + layer
    const size_t off = part * size_t(block_tokens) * kv_dim + within;
    pool[size_t(to) * block_elems + off] = pool[size_t(from) * block_elems + off];
  }
}

// ---- the backend ----------------------------------------------------------------------------------------

struct device_weight {
  int type = 0;
  const uint8_t* data = nullptr;
  size_t row_bytes = 0;
  int rows = 0, cols = 0;
};

class cuda_backend final : public backend {
 public:
  explicit cuda_backend(const llama_model& m) : m_(m), hp_(m.hp) {
    check(cudaStreamCreate(&stream_), "stream");
    plan_ = plan_memory(m, block_tokens_);
    tok_embd_ = upload(m.tok_embd);
    output_ = m.output.data == m.tok_embd.data ? tok_embd_ : upload(m.output);
    output_norm_ = upload_floats(m.output_norm);
    for (const llama_layer& l : m.layers) {
      layer_weights L;
      L.attn_norm = upload_floats(l.attn_norm);
      L.ffn_norm = upload_floats(l.ffn_norm);
      L.wq = upload(l.wq), L.wk = upload(l.wk), L.wv = upload(l.wv), L.wo = upload(l.wo);
      L.gate = upload(l.w_gate), L.up = upload(l.w_up), L.down = upload(l.w_down);
      layers_.push_back(L);
    }
    std::vector<double> inv(size_t(hp_.n_rot / 2));
    for (int i = 0; i < hp_.n_rot / 2; ++i) {
      double f = std::pow(double(hp_.rope_freq_base), -2.0 * i / hp_.n_rot);
      if (!m.rope_freq_factors.empty()) f /= m.rope_freq_factors[size_t(i)];
      inv[size_t(i)] = f;
    }
    double* d_inv = alloc<double>(inv.size() * sizeof(double));
    if (!inv.empty()) check(cudaMemcpy(d_inv, inv.data(), inv.size() * sizeof(double), cudaMemcpyHostToDevice), "upload");
    inv_freq_ = d_inv;
  }

  ~cuda_backend() override {
    cudaStreamSynchronize(stream_);
    for (void* p : allocations_) cudaFree(p);
    if (pool_) cudaFree(pool_);
    cudaStreamDestroy(stream_);
  }

  const char* name() const override { return "cuda"; }
  int kv_block_tokens() const override { return block_tokens_; }
  size_t kv_block_bytes() const override { return plan_.kv_block; }

  void reserve_kv_blocks(int n_blocks) override {
    if (pool_) cudaFree(pool_);
    pool_ = nullptr;
    n_blocks_ = 0;
    if (n_blocks <= 0) return;
    if (cudaMalloc(&pool_, plan_.kv_block * size_t(n_blocks)) != cudaSuccess) {
      cudaGetLastError();
      pool_ = nullptr;
      throw std::bad_alloc();
    }
    n_blocks_ = n_blocks;
  }
  int kv_blocks() const override { return n_blocks_; }

  void copy_kv_block(kv_block_id from, kv_block_id to, int n_tokens) override {
    const size_t block_elems = plan_.kv_block / 2;
    copy_block_kernel<<<64, 256, 0, stream_>>>(static_cast<__half*>(pool_), block_elems, hp_.n_layer, block_tokens_,
                                               hp_.kv_dim(), from, to, n_tokens);
    check(cudaGetLastError(), "copy_kv_block");
  }

  void forward(std::span<const batch_seq> batch, std::vector<float>& logits) override {
    const flat_batch f = flatten(batch, block_tokens_, n_blocks_);
    const int nt = int(f.tokens.size());
    const int n_out = int(f.logits_tokens.size());
    logits.assign(size_t(n_out) * size_t(hp_.n_vocab), 0.0f);
    if (nt == 0) return;
    ensure_scratch(nt, f.max_positions, f.blocks.size());
    upload_ints(d_tokens_, f.tokens);
    upload_ints(d_positions_, f.positions);
    upload_ints(d_seq_, f.seq_of_token);
    upload_ints(d_table_offset_, f.table_offset);
    upload_ints(d_blocks_, f.blocks);
    upload_ints(d_logits_tokens_, f.logits_tokens);

    const int E = hp_.n_embd, Q = hp_.q_dim(), KV = hp_.kv_dim(), F = hp_.n_ff, hd = hp_.head_dim;
    const int qkv_ld = Q + 2 * KV;
    embed_kernel<<<nt, 256, 0, stream_>>>(tok_embd_.type, tok_embd_.data, tok_embd_.row_bytes, d_tokens_, E, x_);
    __half* pool = static_cast<__half*>(pool_);
    for (int il = 0; il < hp_.n_layer; ++il) {
      const layer_weights& L = layers_[size_t(il)];
      prepare(x_, nullptr, L.attn_norm, E, nt, L.wq);
      matvec(L.wq, nt, qkv_, qkv_ld, false);
      matvec(L.wk, nt, qkv_ + Q, qkv_ld, false);
      matvec(L.wv, nt, qkv_ + Q + KV, qkv_ld, false);
      rope_store_kernel<<<nt, 256, 0, stream_>>>(qkv_, qkv_ld, Q, KV, hd, hp_.n_rot, inv_freq_, d_positions_, d_seq_,
                                                 d_table_offset_, d_blocks_, block_tokens_, hp_.n_layer, il, pool);
      const launch_shape as = attention_shape(nt, hp_.n_head);
      attention_kernel<<<dim3(as.grid_x, as.grid_y), as.block, size_t(hd) * 4, stream_>>>(
          qkv_, qkv_ld, Q, KV, hd, hp_.n_head / hp_.n_head_kv, d_positions_, d_seq_, d_table_offset_, d_blocks_,
          block_tokens_, hp_.n_layer, il, pool, scores_, f.max_positions, att_);
      prepare(att_, nullptr, nullptr, Q, nt, L.wo);
      matvec(L.wo, nt, x_, E, true);
      prepare(x_, nullptr, L.ffn_norm, E, nt, L.gate);
      matvec(L.gate, nt, gate_, F, false);
      matvec(L.up, nt, up_, F, false);
      swiglu_kernel<<<256, 256, 0, stream_>>>(gate_, up_, size_t(nt) * F);
      prepare(gate_, nullptr, nullptr, F, nt, L.down);
      matvec(L.down, nt, x_, E, true);
    }
    if (n_out > 0) {
      prepare(x_, d_logits_tokens_, output_norm_, E, n_out, output_);
      matvec(output_, n_out, logits_dev_, hp_.n_vocab, false);
      check(cudaMemcpyAsync(logits.data(), logits_dev_, logits.size() * 4, cudaMemcpyDeviceToHost, stream_), "logits");
    }
    check(cudaStreamSynchronize(stream_), "forward");
    check(cudaGetLastError(), "forward kernels");
  }

 private:
  struct layer_weights {
    const float *attn_norm = nullptr, *ffn_norm = nullptr;
    device_weight wq, wk, wv, wo, gate, up, down;
  };

  template <class T>
  T* alloc(size_t bytes) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes == 0 ? 1 : bytes), "cudaMalloc");
    allocations_.push_back(p);
    return static_cast<T*>(p);
  }
  device_weight upload(const weight& w) {
    device_weight d;
    d.type = int(w.type), d.row_bytes = w.row_bytes, d.rows = w.rows, d.cols = w.cols;
    const size_t bytes = size_t(w.rows) * w.row_bytes;
    uint8_t* p = alloc<uint8_t>(bytes);
    check(cudaMemcpy(p, w.data, bytes, cudaMemcpyHostToDevice), "upload weights");
    d.data = p;
    return d;
  }
  const float* upload_floats(const std::vector<float>& v) {
    float* p = alloc<float>(v.size() * 4);
    if (!v.empty()) check(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice), "upload");
    return p;
  }
  void upload_ints(int32_t* dst, const std::vector<int32_t>& v) {
    if (!v.empty()) check(cudaMemcpyAsync(dst, v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream_), "upload batch");
  }

  // Scratch sized for the largest step seen so far (grown, never shrunk).
  void ensure_scratch(int nt, int max_positions, size_t n_table) {
    if (nt <= cap_tokens_ && max_positions <= cap_positions_ && n_table <= cap_table_) return;
    cudaStreamSynchronize(stream_);
    for (void* p : scratch_) cudaFree(p);
    scratch_.clear();
    cap_tokens_ = std::max(nt, cap_tokens_);
    cap_positions_ = std::max(max_positions, cap_positions_);
    cap_table_ = std::max(n_table, cap_table_);
    auto grab = [&](size_t bytes) {
      void* p = nullptr;
      check(cudaMalloc(&p, bytes == 0 ? 4 : bytes), "scratch");
      scratch_.push_back(p);
      return p;
    };
    const size_t T = size_t(cap_tokens_);
    const int widest = std::max(hp_.n_embd, std::max(hp_.n_ff, hp_.q_dim()));
    x_ = static_cast<float*>(grab(T * hp_.n_embd * 4));
    xn_ = static_cast<float*>(grab(T * widest * 4));
    xq_ = static_cast<q8_act*>(grab(T * (widest / 32) * sizeof(q8_act)));
    qkv_ = static_cast<float*>(grab(T * (hp_.q_dim() + 2 * hp_.kv_dim()) * 4));
    att_ = static_cast<float*>(grab(T * hp_.q_dim() * 4));
    gate_ = static_cast<float*>(grab(T * hp_.n_ff * 4));
    up_ = static_cast<float*>(grab(T * hp_.n_ff * 4));
    scores_ = static_cast<float*>(grab(T * hp_.n_head * size_t(cap_positions_) * 4));
    logits_dev_ = static_cast<float*>(grab(T * hp_.n_vocab * 4));
    d_tokens_ = static_cast<int32_t*>(grab(T * 4));
    d_positions_ = static_cast<int32_t*>(grab(T * 4));
    d_seq_ = static_cast<int32_t*>(grab(T * 4));
    d_table_offset_ = static_cast<int32_t*>(grab(T * 4));  // (at most one sequence per token)
    d_blocks_ = static_cast<int32_t*>(grab(cap_table_ * 4));
    d_logits_tokens_ = static_cast<int32_t*>(grab(T * 4));
  }

  // Normalises (norm_w non-null) or copies nt rows of `in` (rows: which ones, or null), then quantizes them for
  // a quantized weight or rounds them for an F16/BF16 one, into xn_ / xq_.
  void prepare(const float* in, const int32_t* rows, const float* norm_w, int n, int nt, const device_weight& w) {
    const bool quant = w.type != int(tensor_type::f32) && w.type != int(tensor_type::f16) && w.type != int(tensor_type::bf16);
    const int round = w.type == int(tensor_type::f16) ? 1 : w.type == int(tensor_type::bf16) ? 2 : 0;
    norm_prepare_kernel<<<nt, 256, 0, stream_>>>(in, rows, norm_w, hp_.rms_eps, n, xn_, quant ? xq_ : nullptr, round);
  }

  void matvec(const device_weight& w, int nt, float* y, int ldy, bool accumulate) {
    const launch_shape s = matvec_shape(w.rows, nt);
    matvec_kernel<<<dim3(s.grid_x, s.grid_y), s.block, 0, stream_>>>(w.type, w.data, w.row_bytes, w.rows, w.cols, xn_,
                                                                     xq_, y, ldy, accumulate);
  }

  const llama_model& m_;
  const llama_hparams& hp_;
  const int block_tokens_ = 16;
  memory_plan plan_;
  cudaStream_t stream_{};
  std::vector<void*> allocations_, scratch_;
  device_weight tok_embd_, output_;
  const float* output_norm_ = nullptr;
  const double* inv_freq_ = nullptr;
  std::vector<layer_weights> layers_;
  void* pool_ = nullptr;
  int n_blocks_ = 0;
  int cap_tokens_ = 0, cap_positions_ = 0;
  size_t cap_table_ = 0;
  float *x_ = nullptr, *xn_ = nullptr, *qkv_ = nullptr, *att_ = nullptr, *gate_ = nullptr, *up_ = nullptr;
  float *scores_ = nullptr, *logits_dev_ = nullptr;
  q8_act* xq_ = nullptr;
  int32_t *d_tokens_ = nullptr, *d_positions_ = nullptr, *d_seq_ = nullptr, *d_table_offset_ = nullptr;
  int32_t *d_blocks_ = nullptr, *d_logits_tokens_ = nullptr;
};

}  // namespace

std::string why_not_available() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable CUDA device (") + cudaGetErrorString(e) + ")";
  }
  if (n == 0) return "no CUDA device";
  return "";
}

std::unique_ptr<backend> make_backend(const llama_model& m) {
  if (const std::string why = why_not_available(); !why.empty()) throw std::runtime_error(why);
  if (m.arch != "llama")  // (no NEOX RoPE, Q/K/V biases or Q/K norms in these kernels yet)
    throw std::runtime_error("the CUDA backend runs the llama architecture only; this model is " + m.arch);
  return std::make_unique<cuda_backend>(m);
}

}  // namespace sluice::engine::cuda
