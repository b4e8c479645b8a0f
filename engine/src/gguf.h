// GGUF (v2/v3) reader over a memory map. Parsing validates every count, length, type, offset and bound
// before anything is used, so a malformed or hostile file yields errc::bad_file naming the key, tensor or
// byte offset, never a crash, an out-of-bounds read or a huge allocation. Tensor data stay in the map.
// What must not go in here: knowledge of any model architecture (see llama_model.h).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mapped_file.h"
#include "sluice/engine/engine.h"

namespace sluice::engine {

enum class gguf_type : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};

struct gguf_value {
  gguf_type type = gguf_type::u8;
  // Scalars (whichever fits `type`): integers widened, floats as double.
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0.0;
  std::string_view str;  // points into the map
  // Arrays: element type, count, and for numeric elements the raw little-endian bytes in the map.
  gguf_type elem_type = gguf_type::u8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;
  std::vector<std::string_view> strings;  // string arrays, pointing into the map
};

struct gguf_tensor {
  std::string name;
  uint32_t n_dims = 0;
  std::array<uint64_t, 4> ne{1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension
  uint32_t type = 0;                       // tensor_type id
  uint64_t offset = 0;                     // from the start of the data section
  uint64_t n_elems = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the map, bounds-checked
};

class gguf_file {
 public:
  static result<std::unique_ptr<gguf_file>> parse(std::unique_ptr<mapped_file> file);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_bytes() const { return file_->bytes().size(); }
  const std::string& path() const { return file_->path(); }
  // Drops the pages of [p, p + n) from this process's memory (see mapped_file::release).
  void release(const uint8_t* p, size_t n) const { file_->release({p, n}); }

  const gguf_value* find(std::string_view key) const;
  const gguf_tensor* tensor(std::string_view name) const;
  const std::vector<gguf_tensor>& tensors() const { return tensors_; }
  const std::vector<std::pair<std::string, gguf_value>>& metadata() const { return kv_; }

  // Typed getters: errc::bad_file when present with the wrong type or out of range; `missing` when absent.
  result<std::optional<std::string>> get_string(std::string_view key) const;
  result<std::optional<uint64_t>> get_uint(std::string_view key) const;  // any non-negative integer type
  result<std::optional<double>> get_float(std::string_view key) const;   // f32/f64 (or an integer)
  result<std::optional<bool>> get_bool(std::string_view key) const;
  // Arrays: errc::bad_file when the element type does not fit.
  result<std::optional<std::vector<std::string>>> get_string_array(std::string_view key) const;
  result<std::optional<std::vector<int32_t>>> get_int_array(std::string_view key) const;
  result<std::optional<std::vector<float>>> get_float_array(std::string_view key) const;  // f32 elements

 private:
  explicit gguf_file(std::unique_ptr<mapped_file> f) : file_(std::move(f)) {}
  result<void> parse_all();

  std::unique_ptr<mapped_file> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, gguf_value>> kv_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<gguf_tensor> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace sluice::engine
