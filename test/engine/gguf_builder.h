// Test helper: writes GGUF bytes in memory (valid or deliberately broken) for the reader and loader tests.
// What must not go in here: assertions (tests decide what is expected).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "sluice/engine/engine.h"

namespace sluice::engine {
// Lets Catch print a failed result<T> (boost's operator<< streams the error).
inline std::ostream& operator<<(std::ostream& os, const error& e) {
  return os << "engine error " << int(e.code) << ": " << e.message;
}
}  // namespace sluice::engine

namespace sluice::engine::test {

class gguf_builder {
 public:
  struct tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
    std::vector<uint8_t> data;
  };

  uint32_t version = 3;
  uint64_t alignment = 32;
  std::vector<std::vector<uint8_t>> kvs;  // encoded key/value records
  std::vector<tensor> tensors;
  // Overrides of the counts written in the header (hostile files).
  int64_t n_kv_override = -1, n_tensors_override = -1;

  template <class T>
  static void put(std::vector<uint8_t>& b, T v) {
    uint8_t raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    b.insert(b.end(), raw, raw + sizeof(T));
  }
  static void put_str(std::vector<uint8_t>& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void kv_u32(const std::string& k, uint32_t v) { auto b = key(k, 4); put(b, v); kvs.push_back(b); }
  void kv_f32(const std::string& k, float v) { auto b = key(k, 6); put(b, v); kvs.push_back(b); }
  void kv_bool(const std::string& k, bool v) { auto b = key(k, 7); put<uint8_t>(b, v); kvs.push_back(b); }
  void kv_str(const std::string& k, const std::string& v) { auto b = key(k, 8); put_str(b, v); kvs.push_back(b); }
  void kv_str_array(const std::string& k, const std::vector<std::string>& v) {
    auto b = key(k, 9);
    put<uint32_t>(b, 8);
    put<uint64_t>(b, v.size());
    for (auto& s : v) put_str(b, s);
    kvs.push_back(b);
  }
  void kv_i32_array(const std::string& k, const std::vector<int32_t>& v) {
    auto b = key(k, 9);
    put<uint32_t>(b, 5);
    put<uint64_t>(b, v.size());
    for (auto x : v) put(b, x);
    kvs.push_back(b);
  }
  // Adds a tensor with its data placed after the previous one (aligned). bytes = its data.
  void add_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::vector<uint8_t> bytes) {
    uint64_t off = 0;
    if (!tensors.empty()) {
      auto& t = tensors.back();
      off = (t.offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    tensors.push_back({name, std::move(ne), type, off, std::move(bytes)});
  }
  void add_f32_tensor(const std::string& name, std::vector<uint64_t> ne, float value = 1.0f) {
    uint64_t n = 1;
    for (auto d : ne) n *= d;
    std::vector<uint8_t> b;
    for (uint64_t i = 0; i < n; ++i) put(b, value + 0.001f * float(i % 97));
    add_tensor(name, std::move(ne), 0, std::move(b));
  }

  std::vector<uint8_t> build() const {
    std::vector<uint8_t> b;
    put<uint32_t>(b, 0x46554747u);
    put<uint32_t>(b, version);
    put<uint64_t>(b, n_tensors_override >= 0 ? uint64_t(n_tensors_override) : tensors.size());
    put<uint64_t>(b, n_kv_override >= 0 ? uint64_t(n_kv_override) : kvs.size());
    for (auto& kv : kvs) b.insert(b.end(), kv.begin(), kv.end());
    for (auto& t : tensors) {
      put_str(b, t.name);
      put<uint32_t>(b, uint32_t(t.ne.size()));
      for (auto d : t.ne) put<uint64_t>(b, d);
      put<uint32_t>(b, t.type);
      put<uint64_t>(b, t.offset);
    }
    size_t data_start = (b.size() + alignment - 1) / alignment * alignment;
    b.resize(data_start, 0);
    for (auto& t : tensors) {
      if (b.size() < data_start + t.offset) b.resize(data_start + t.offset, 0);
      if (b.size() < data_start + t.offset + t.data.size()) b.resize(data_start + t.offset + t.data.size(), 0);
      std::memcpy(b.data() + data_start + t.offset, t.data.data(), t.data.size());
    }
    return b;
  }

 private:
  static std::vector<uint8_t> key(const std::string& k, uint32_t type) {
    std::vector<uint8_t> b;
    put_str(b, k);
    put<uint32_t>(b, type);
    return b;
  }
};

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline std::string source_dir() {
#ifdef SLUICE_SOURCE_DIR
  return SLUICE_SOURCE_DIR;
#else
  return ".";
#endif
}

}  // namespace sluice::engine::test
