// The little binary helpers the model files share (router, acceptance and task model files): appending fixed-size
// values and strings, reading them back with a bounds check, the FNV-1a 64 checksum, the checks every versioned
// file starts and ends with, and the error shape.
// What must not go in here: any one file's layout or validation.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
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

// A string: u32 byte count, then the bytes.
inline void put_str(std::string& out, std::string_view s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

inline bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

inline bool unit_interval(double x) { return x >= 0.0 && x <= 1.0; }  // false for NaN

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
  // A string of at most `limit` bytes; false (nothing read) when the count is larger: a corrupt header.
  bool get_str(std::string& dst, uint32_t limit) {
    const uint32_t len = get<uint32_t>();
    if (len > limit) return false;
    dst.assign(get_bytes(len));
    return true;
  }
};

inline error bad_file(std::string_view origin, const std::string& what) {
  return error{errc::internal, std::string(origin) + ": " + what, {}};
}

// What a versioned model file names itself in errors and how it is made again, for open_model_file.
struct model_file_kind {
  std::string_view magic;   // 8 bytes
  std::string_view what;    // "acceptance model"
  uint32_t format_version;
  uint32_t extractor_version;
  std::string_view extractor;  // "acceptance feature extractor"
  std::string_view remedy;     // "retrain the model"
};

inline error truncated_file(std::string_view origin, size_t size) {
  return bad_file(origin, "truncated (" + std::to_string(size) + " bytes, the header implies more)");
}

// The checks every versioned file starts with: magic, format version, extractor version. On success `r` reads
// the bytes after them, up to (not including) the trailing checksum.
inline std::optional<error> open_model_file(std::string_view bytes, const model_file_kind& k, std::string_view origin,
                                            reader& r) {
  const size_t m = k.magic.size();
  if (bytes.size() < m || bytes.substr(0, m) != k.magic) {
    if (bytes.size() < m && k.magic.substr(0, bytes.size()) == bytes)
      return bad_file(origin, "truncated (" + std::to_string(bytes.size()) + " bytes, shorter than the header)");
    return bad_file(origin, "not a Sluice " + std::string(k.what) + " (bad magic)");
  }
  // Every variable-length field is bounded before it is read; a read past the end is reported as truncation.
  r = reader{bytes.substr(0, bytes.size() >= m + 8 ? bytes.size() - 8 : bytes.size()), m};
  const uint32_t version = r.get<uint32_t>();
  const uint32_t extractor = r.get<uint32_t>();
  if (r.overrun) return truncated_file(origin, bytes.size());
  if (version != k.format_version)
    return bad_file(origin, "unsupported format version " + std::to_string(version) + " (this build reads " +
                                std::to_string(k.format_version) + ")");
  if (extractor != k.extractor_version)
    return bad_file(origin, "trained with " + std::string(k.extractor) + " version " + std::to_string(extractor) +
                                ", this build extracts version " + std::to_string(k.extractor_version) + ": " +
                                std::string(k.remedy));
  return std::nullopt;
}

// The checks every versioned file ends with, once its header says how long it must be: the exact size, then
// the FNV-1a 64 checksum in the last 8 bytes.
inline std::optional<error> check_model_file_end(std::string_view bytes, uint64_t expected, std::string_view origin) {
  if (bytes.size() != expected)
    return bad_file(origin, (bytes.size() < expected ? "truncated: " : "trailing bytes: ") +
                                std::to_string(bytes.size()) + " bytes, the header implies " + std::to_string(expected));
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != fnv1a64(bytes.substr(0, bytes.size() - 8))) return bad_file(origin, "checksum mismatch: the file is corrupt");
  return std::nullopt;
}

// The precision curve both model files carry: points of (f64 threshold, f64 rate, f64 precision), `Rate` being
// the point's rate member (accept_rate, answer_rate). Points lie in [0, 1] (precision may be NaN: no answer at
// that threshold), thresholds increase; written and read as 24 bytes each.
template <auto Rate, class Point>
std::string check_curve(const std::vector<Point>& curve, size_t max_points) {
  if (curve.size() > max_points) return "curve has more than " + std::to_string(max_points) + " points";
  for (size_t i = 0; i < curve.size(); ++i) {
    const Point& p = curve[i];
    if (!unit_interval(p.threshold) || !unit_interval(p.*Rate) || !(std::isnan(p.precision) || unit_interval(p.precision)))
      return "curve point " + std::to_string(i) + " lies outside [0, 1]";
    if (i > 0 && p.threshold < curve[i - 1].threshold) return "curve thresholds are not increasing";
  }
  return {};
}

template <auto Rate, class Point>
void put_curve(std::string& out, const std::vector<Point>& curve) {
  put<uint32_t>(out, static_cast<uint32_t>(curve.size()));
  for (const Point& p : curve) {
    put<double>(out, p.threshold);
    put<double>(out, p.*Rate);
    put<double>(out, p.precision);
  }
}

// Reads `n` points (the count was read and bounded by the caller, which also checked the file's size).
template <auto Rate, class Point>
void get_curve(reader& r, std::vector<Point>& curve, uint32_t n) {
  curve.resize(n);
  for (Point& p : curve) {
    p.threshold = r.get<double>();
    p.*Rate = r.get<double>();
    p.precision = r.get<double>();
  }
}

}  // namespace sluice::router::detail
