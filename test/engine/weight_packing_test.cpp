// Rows packed 8 at a time (weight_packing.h): packing round-trips, and the VNNI matmul over packed rows gives
// the same bits as over the plain rows, for every token tile, row range (whole groups, cut groups, the plain
// tail) and with and without accumulation.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "kernels.h"
#include "weight_packing.h"

using namespace sluice::engine;

namespace {

std::vector<uint8_t> random_quant_rows(tensor_type t, int rows, int k, std::mt19937& rng) {
  const size_t rb = row_bytes_of(t, k), bb = t == tensor_type::q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_1);
  std::vector<uint8_t> w(rb * size_t(rows));
  for (auto& b : w) b = uint8_t(rng());
  for (int r = 0; r < rows; ++r)
    for (int b = 0; b < k / qk; ++b) {  // sane fp16 scales (and Q4_1 minimums)
      uint8_t* blk = w.data() + size_t(r) * rb + size_t(b) * bb;
      const uint16_t d = f32_to_fp16(0.01f + 0.001f * float(rng() % 100));
      std::memcpy(blk, &d, 2);
      if (t == tensor_type::q4_1) {
        const uint16_t m = f32_to_fp16(-0.1f + 0.001f * float(rng() % 100));
        std::memcpy(blk + 2, &m, 2);
      }
    }
  return w;
}

}  // namespace

TEST_CASE("weight packing: unpack_row gives back every row", "[kernels]") {
  std::mt19937 rng(3);
  const int rows = 21, k = 96;  // two groups of 8 and a plain tail of 5
  for (tensor_type t : {tensor_type::q4_1, tensor_type::q8_0}) {
    const auto w = random_quant_rows(t, rows, k, rng);
    std::vector<uint8_t> packed(w.size()), row(row_bytes_of(t, k));
    pack_rows(t, w.data(), packed.data(), rows, k);
    CHECK(packed != w);
    for (int r = 0; r < rows; ++r) {
      unpack_row(t, packed.data(), rows, k, r, row.data());
      INFO("type " << int(t) << " row " << r);
      CHECK(std::equal(row.begin(), row.end(), w.begin() + std::ptrdiff_t(size_t(r) * row.size())));
    }
  }
}

TEST_CASE("weight packing: the VNNI matmul over packed rows equals it over plain rows bit for bit", "[kernels]") {
  const kernel_table* vnni = vnni_kernels();
  __builtin_cpu_init();
  if (!vnni || !__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx2")) {
    WARN("no AVX512-VNNI on this CPU: packed matmul not tested");
    return;
  }
  REQUIRE(vnni->reads_packed);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int rows = 29, k = 160;  // three groups and a plain tail of 5; 5 blocks per row
  for (tensor_type t : {tensor_type::q4_1, tensor_type::q8_0}) {
    const auto w = random_quant_rows(t, rows, k, rng);
    std::vector<uint8_t> packed(w.size());
    pack_rows(t, w.data(), packed.data(), rows, k);
    for (int nt : {1, 2, 3, 4, 5, 9}) {
      std::vector<float> x(size_t(nt) * k);
      for (auto& v : x) v = nd(rng);
      std::vector<block_q8_act> xq(size_t(nt) * (k / qk));
      for (int i = 0; i < nt; ++i) vnni->quantize_q8(x.data() + i * k, xq.data() + i * (k / qk), k);
      for (auto [r0, r1] : {std::pair{0, 29}, {8, 16}, {3, 21}, {5, 27}, {24, 29}, {9, 12}})
        for (bool acc : {false, true}) {
          matmul_args a;
          a.type = t; a.row_bytes = row_bytes_of(t, k); a.k = k;
          a.r0 = r0; a.r1 = r1; a.nt = nt; a.xq = xq.data(); a.ldxq = k / qk; a.ldy = rows; a.accumulate = acc;
          std::vector<float> plain(size_t(nt) * rows, 0.25f), got(plain);
          a.w = w.data(); a.y = plain.data();
          vnni->matmul(a);
          a.w = packed.data(); a.y = got.data(); a.packed_rows = rows / pack_group_rows * pack_group_rows;
          vnni->matmul(a);
          INFO("type " << int(t) << " nt " << nt << " rows [" << r0 << ", " << r1 << ") acc " << acc);
          CHECK(got == plain);
        }
    }
  }
}
