// The little binary helpers the model files share (router_model_file.cpp, acceptance_model_file.cpp): appending
// fixed-size values, reading them back with a bounds check, the FNV-1a 64 checksum and the error shape.
// What must not go in here: any one file's layout or validation.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/router/error.h"

namespace sluice::router::detail {

static_assert(std::endian::native == std::endian::little, "model files are written with memcpy: little-endian only");

inline uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

template <class T>
void put(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

inline void put_floats(std::string& out, const std::vector<float>& v) {
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

// Reads fixed-size values in order. A read past the end returns zeros, moves to the end and sets `overrun`
// (sticky), so a decoder can read a whole section and check once.
struct reader {
  std::string_view bytes;
  size_t pos = 0;
  bool overrun = false;

  size_t remaining() const { return bytes.size() - pos; }
  template <class T>
  T get() {
    T v{};
    if (sizeof(T) > remaining()) {
      overrun = true;
      pos = bytes.size();
      return v;
    }
    std::memcpy(&v, bytes.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  void get_floats(std::vector<float>& v, size_t n) {
    if (n > remaining() / sizeof(float)) {
      overrun = true;
      pos = bytes.size();
      v.clear();
      return;
    }
    v.resize(n);
    if (n > 0) std::memcpy(v.data(), bytes.data() + pos, n * sizeof(float));  // (memcpy of null is UB)
    pos += n * sizeof(float);
  }
  std::string_view get_bytes(size_t n) {
    if (n > remaining()) {
      overrun = true;
      pos = bytes.size();
      return {};
    }
    std::string_view s = bytes.substr(pos, n);
    pos += n;
    return s;
  }
};

inline error bad_file(std::string_view origin, const std::string& what) {
  return error{errc::internal, std::string(origin) + ": " + what, {}};
}

}  // namespace sluice::router::detail
