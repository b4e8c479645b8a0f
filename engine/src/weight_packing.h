// Weights repacked at load for the AVX512-VNNI matmul: Q4_1 and Q8_0 rows interleaved by groups of 8, so one
// 512-bit load feeds 4 (Q4_1) or 2 (Q8_0) rows and the fp16 scales of 8 rows convert in one instruction.
// The packed copy has exactly the size of the original and replaces it for matmuls (the source pages of the
// map are released); embeddings keep reading the map. What must not go in here: the kernels themselves
// (kernels_vnni_packed_avx2.cpp), model structure beyond listing the matrices.
//
// Layout of a (rows, k) matrix, nb = k / 32 blocks per row, G = rows / 8 groups, rows8 = 8 G:
//   [quants: G x nb x (8 rows' quants)] [scales: G x nb x (8 rows' scales)] [rows rows8.. in the plain layout]
// Group g, block b: quants at (g nb + b) * qbytes, scales at G nb qbytes + (g nb + b) * sbytes, with
//   Q4_1: qbytes 128 (row i's 16 nibble bytes at 16 i), sbytes 32 (d of rows 0..7, then m of rows 0..7);
//   Q8_0: qbytes 256 (row i's 32 quants at 32 i, stored as unsigned q + 128), sbytes 16 (d of rows 0..7).
// Both parts together take rows8 * row_bytes, so the plain tail rows sit where they were.
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "tensor_types.h"

namespace sluice::engine {

struct kernel_table;
struct llama_model;

constexpr int pack_group_rows = 8;

inline bool packable(tensor_type t) { return t == tensor_type::q4_1 || t == tensor_type::q8_0; }
// Bytes of one group's block of quants / of scales in the packed layout (see above).
inline size_t packed_quant_bytes(tensor_type t) { return t == tensor_type::q4_1 ? 128 : 256; }
inline size_t packed_scale_bytes(tensor_type t) { return t == tensor_type::q4_1 ? 32 : 16; }

// src: (rows, k) in the plain layout; dst: the same number of bytes, packed. k % 32 == 0.
void pack_rows(tensor_type t, const uint8_t* src, uint8_t* dst, int rows, int k);
// Row r of a packed matrix back in the plain layout (row_bytes_of(t, k) bytes).
void unpack_row(tensor_type t, const uint8_t* packed, int rows, int k, int r, uint8_t* dst);

// The packed copies of a model's matrices that a kernel table reads packed (none for tables that do not).
class packed_weights {
 public:
  packed_weights(const llama_model& m, const kernel_table& k);
  // The packed copy of the matrix whose plain bytes start at `data`, or nullptr. Called per matmul: a binary
  // search in one small sorted array (a hash map's scattered nodes missed the cache after each matmul).
  const uint8_t* find(const uint8_t* data) const {
    auto it = std::lower_bound(index_.begin(), index_.end(), data, [](const auto& e, const uint8_t* d) { return e.first < d; });
    return it != index_.end() && it->first == data ? it->second : nullptr;
  }
  size_t bytes() const { return bytes_; }

 private:
  struct aligned_free {
    void operator()(uint8_t* p) const;
  };
  std::vector<std::unique_ptr<uint8_t, aligned_free>> copies_;
  std::vector<std::pair<const uint8_t*, const uint8_t*>> index_;  // (plain bytes, packed copy), sorted
  size_t bytes_ = 0;
};

}  // namespace sluice::engine
