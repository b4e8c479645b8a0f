// Portable packing and unpacking of the interleaved layout (see weight_packing.h); load time only.
#include "weight_packing.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "kernels.h"
#include "llama_model.h"

namespace sluice::engine {

namespace {
// Groups [g0, g1) of pack_rows: reads source rows [8 g0, 8 g1) only.
void pack_groups(tensor_type t, const uint8_t* src, uint8_t* dst, int rows, int k, int g0, int g1) {
  const int nb = k / qk, groups = rows / pack_group_rows;
  const size_t rb = row_bytes_of(t, k), qb = packed_quant_bytes(t), sb = packed_scale_bytes(t);
  uint8_t* quants = dst;
  uint8_t* scales = dst + size_t(groups) * size_t(nb) * qb;
  for (int g = g0; g < g1; ++g)
    for (int b = 0; b < nb; ++b) {
      uint8_t* q = quants + (size_t(g) * size_t(nb) + size_t(b)) * qb;
      uint8_t* s = scales + (size_t(g) * size_t(nb) + size_t(b)) * sb;
      for (int i = 0; i < pack_group_rows; ++i) {
        const uint8_t* row = src + size_t(g * pack_group_rows + i) * rb;
        if (t == tensor_type::q4_1) {
          const auto* blk = reinterpret_cast<const block_q4_1*>(row) + b;
          std::memcpy(s + 2 * i, &blk->d, 2);
          std::memcpy(s + 16 + 2 * i, &blk->m, 2);
          std::memcpy(q + 16 * i, blk->qs, 16);
        } else {
          const auto* blk = reinterpret_cast<const block_q8_0*>(row) + b;
          std::memcpy(s + 2 * i, &blk->d, 2);
          for (int j = 0; j < qk; ++j) q[32 * i + j] = uint8_t(blk->qs[j]) ^ 0x80u;  // q + 128
        }
      }
    }
}
}  // namespace

void pack_rows(tensor_type t, const uint8_t* src, uint8_t* dst, int rows, int k) {
  const int groups = rows / pack_group_rows;
  pack_groups(t, src, dst, rows, k, 0, groups);
  const size_t rb = row_bytes_of(t, k), packed = size_t(groups) * pack_group_rows * rb;
  std::memcpy(dst + packed, src + packed, size_t(rows - groups * pack_group_rows) * rb);
}

void unpack_row(tensor_type t, const uint8_t* packed, int rows, int k, int r, uint8_t* dst) {
  const int nb = k / qk, groups = rows / pack_group_rows;
  const size_t rb = row_bytes_of(t, k), qb = packed_quant_bytes(t), sb = packed_scale_bytes(t);
  if (r >= groups * pack_group_rows) {
    std::memcpy(dst, packed + size_t(r) * rb, rb);
    return;
  }
  const int g = r / pack_group_rows, i = r % pack_group_rows;
  const uint8_t* scales = packed + size_t(groups) * size_t(nb) * qb;
  for (int b = 0; b < nb; ++b) {
    const uint8_t* q = packed + (size_t(g) * size_t(nb) + size_t(b)) * qb;
    const uint8_t* s = scales + (size_t(g) * size_t(nb) + size_t(b)) * sb;
    if (t == tensor_type::q4_1) {
      auto* blk = reinterpret_cast<block_q4_1*>(dst) + b;
      std::memcpy(&blk->d, s + 2 * i, 2);
      std::memcpy(&blk->m, s + 16 + 2 * i, 2);
      std::memcpy(blk->qs, q + 16 * i, 16);
    } else {
      auto* blk = reinterpret_cast<block_q8_0*>(dst) + b;
      std::memcpy(&blk->d, s + 2 * i, 2);
      for (int j = 0; j < qk; ++j) blk->qs[j] = int8_t(q[32 * i + j] ^ 0x80u);
    }
  }
}

void packed_weights::aligned_free::operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t(64)); }

packed_weights::packed_weights(const llama_model& m, const kernel_table& k) {
  if (!k.reads_packed) return;
  auto add = [&](const weight& w) {
    if (!packable(w.type) || w.cols % qk != 0 || w.rows < pack_group_rows || find(w.data)) return;
    const size_t n = size_t(w.rows) * w.row_bytes;
    std::unique_ptr<uint8_t, aligned_free> copy(static_cast<uint8_t*>(::operator new[](n, std::align_val_t(64))));
    // Matmuls read only the copy from now on: give the map's pages back as the packing goes (they fault in
    // again if read), so that the peak stays near one copy of the model.
    const int groups = w.rows / pack_group_rows, chunk = 256;  // groups per step (1-2 MB of a large matrix)
    for (int g = 0; g < groups; g += chunk) {
      const int g1 = std::min(groups, g + chunk);
      pack_groups(w.type, w.data, copy.get(), w.rows, w.cols, g, g1);
      if (m.file) m.file->release(w.data + size_t(g) * pack_group_rows * w.row_bytes, size_t(g1 - g) * pack_group_rows * w.row_bytes);
    }
    const size_t packed = size_t(groups) * pack_group_rows * w.row_bytes;
    std::memcpy(copy.get() + packed, w.data + packed, n - packed);
    bytes_ += n;
    index_.insert(std::lower_bound(index_.begin(), index_.end(), std::pair<const uint8_t*, const uint8_t*>(w.data, nullptr)),
                  {w.data, copy.get()});
    copies_.push_back(std::move(copy));
  };
  for (const llama_layer& L : m.layers)
    for (const weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) add(*w);
  add(m.output);
}

}  // namespace sluice::engine
