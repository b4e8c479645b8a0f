// The task model file format: encode and validate-on-decode, and the model's own consistency check.
// What must not go in here: classifying or training.
//
// Layout (little-endian, no padding; str = u32 byte count, then the bytes):
//   magic "SLUICETM" (8 bytes) | u32 format_version | u32 task_extractor_version
//   u32 hash_bits | u32 word_ngram_max | u32 char_ngram_max | u32 hash_seed | u32 n_labels | str label[n_labels]
//   u64 n_features | f64 threshold | str threshold_rule | f64 heldout_accuracy | u64 rows_trained | str notes
//   u32 n_curve | (f64 threshold, f64 answer_rate, f64 precision)[n_curve]
//   f32 bias[n_labels] | f32 weights[n_labels * n_features] (one row per label)
//   u64 checksum: FNV-1a 64 over every byte before it
#include <cmath>
#include <cstring>

#include "binary_io.h"
#include "sluice/router/task_model.h"

namespace sluice::router {

namespace {

using detail::bad_file;
using detail::fnv1a64;
using detail::put;
using detail::reader;

constexpr char magic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'T', 'M'};
constexpr uint32_t format_version = 1;
constexpr uint32_t max_rule_bytes = 1 << 12;
constexpr uint32_t max_notes_bytes = 1 << 16;
constexpr uint32_t max_curve_points = 1 << 12;

void put_str(std::string& out, std::string_view s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

bool finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

bool unit_interval(double x) { return x >= 0.0 && x <= 1.0; }  // false for NaN

}  // namespace

std::string task_model::check() const {
  if (std::string why = validate(config); !why.empty()) return "config: " + why;
  if (labels.size() < 2 || labels.size() > max_task_labels)
    return std::to_string(labels.size()) + " labels (2.." + std::to_string(max_task_labels) + " allowed)";
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i].empty() || labels[i].size() > max_task_label_bytes)
      return "label " + std::to_string(i + 1) + " must be 1.." + std::to_string(max_task_label_bytes) + " bytes";
    for (size_t j = 0; j < i; ++j)
      if (labels[j] == labels[i]) return "label '" + labels[i] + "' appears twice";
  }
  const size_t n = task_feature_count(config);
  if (labels.size() * n > max_task_parameters)
    return std::to_string(labels.size()) + " labels x 2^" + std::to_string(config.hash_bits) +
           " features exceed the limit of 2^26 weights: lower hash_bits";
  if (weights.size() != labels.size() * n)
    return "weights has " + std::to_string(weights.size()) + " values, " + std::to_string(labels.size()) +
           " labels x " + std::to_string(n) + " features need " + std::to_string(labels.size() * n);
  if (bias.size() != labels.size())
    return "bias has " + std::to_string(bias.size()) + " values for " + std::to_string(labels.size()) + " labels";
  if (!finite(bias) || !finite(weights)) return "a weight is not finite";
  if (!unit_interval(threshold)) return "threshold must lie in [0, 1]";
  if (!unit_interval(heldout_accuracy)) return "heldout_accuracy must lie in [0, 1]";
  if (threshold_rule.size() > max_rule_bytes) return "threshold_rule longer than 4 KiB";
  if (notes.size() > max_notes_bytes) return "notes longer than 64 KiB";
  if (curve.size() > max_curve_points) return "curve has more than " + std::to_string(max_curve_points) + " points";
  for (size_t i = 0; i < curve.size(); ++i) {
    const task_point& p = curve[i];
    if (!unit_interval(p.threshold) || !unit_interval(p.answer_rate) ||
        !(std::isnan(p.precision) || unit_interval(p.precision)))
      return "curve point " + std::to_string(i) + " lies outside [0, 1]";
    if (i > 0 && p.threshold < curve[i - 1].threshold) return "curve thresholds are not increasing";
  }
  return {};
}

std::string encode_task_model(const task_model& m) {
  std::string out;
  size_t label_bytes = 0;
  for (const std::string& l : m.labels) label_bytes += 4 + l.size();
  out.reserve(128 + label_bytes + m.threshold_rule.size() + m.notes.size() + 24 * m.curve.size() +
              4 * (m.bias.size() + m.weights.size()));
  out.append(magic, sizeof magic);
  put<uint32_t>(out, format_version);
  put<uint32_t>(out, task_extractor_version);
  put<uint32_t>(out, m.config.hash_bits);
  put<uint32_t>(out, m.config.word_ngram_max);
  put<uint32_t>(out, m.config.char_ngram_max);
  put<uint32_t>(out, m.config.hash_seed);
  put<uint32_t>(out, static_cast<uint32_t>(m.labels.size()));
  for (const std::string& l : m.labels) put_str(out, l);
  put<uint64_t>(out, task_feature_count(m.config));
  put<double>(out, m.threshold);
  put_str(out, m.threshold_rule);
  put<double>(out, m.heldout_accuracy);
  put<uint64_t>(out, m.rows_trained);
  put_str(out, m.notes);
  put<uint32_t>(out, static_cast<uint32_t>(m.curve.size()));
  for (const task_point& p : m.curve) {
    put<double>(out, p.threshold);
    put<double>(out, p.answer_rate);
    put<double>(out, p.precision);
  }
  detail::put_floats(out, m.bias);
  detail::put_floats(out, m.weights);
  put<uint64_t>(out, fnv1a64(out));
  return out;
}

result<task_model> decode_task_model(std::string_view bytes, std::string_view origin) {
  if (bytes.size() < sizeof magic || std::memcmp(bytes.data(), magic, sizeof magic) != 0) {
    if (bytes.size() < sizeof magic && std::string_view(magic, bytes.size()) == bytes)
      return bad_file(origin, "truncated (" + std::to_string(bytes.size()) + " bytes, shorter than the header)");
    return bad_file(origin, "not a Sluice task model (bad magic)");
  }
  // Every variable-length field is bounded before it is read; a read past the end is reported as truncation.
  reader r{bytes.substr(0, bytes.size() >= sizeof magic + 8 ? bytes.size() - 8 : bytes.size()), sizeof magic};
  auto truncated = [&] {
    return bad_file(origin, "truncated (" + std::to_string(bytes.size()) + " bytes, the header implies more)");
  };
  const uint32_t version = r.get<uint32_t>();
  const uint32_t extractor = r.get<uint32_t>();
  if (r.overrun) return truncated();
  if (version != format_version)
    return bad_file(origin, "unsupported format version " + std::to_string(version) + " (this build reads " +
                                std::to_string(format_version) + ")");
  if (extractor != task_extractor_version)
    return bad_file(origin, "trained with task feature extractor version " + std::to_string(extractor) +
                                ", this build extracts version " + std::to_string(task_extractor_version) +
                                ": distill the model again");
  task_model m;
  m.config.hash_bits = r.get<uint32_t>();
  m.config.word_ngram_max = r.get<uint32_t>();
  m.config.char_ngram_max = r.get<uint32_t>();
  m.config.hash_seed = r.get<uint32_t>();
  const uint32_t n_labels = r.get<uint32_t>();
  if (r.overrun) return truncated();
  if (std::string why = validate(m.config); !why.empty()) return bad_file(origin, "invalid config: " + why);
  if (n_labels < 2 || n_labels > max_task_labels)
    return bad_file(origin, std::to_string(n_labels) + " labels (2.." + std::to_string(max_task_labels) + " allowed)");
  auto get_str = [&](std::string& dst, uint32_t limit, const char* what) -> std::string {
    const uint32_t len = r.get<uint32_t>();
    if (len > limit) return std::string(what) + " field too long (corrupt header)";
    dst.assign(r.get_bytes(len));
    return {};
  };
  for (uint32_t i = 0; i < n_labels; ++i) {
    if (std::string why = get_str(m.labels.emplace_back(), max_task_label_bytes, "label"); !why.empty())
      return bad_file(origin, why);
  }
  const uint64_t n_features = r.get<uint64_t>();
  if (r.overrun) return truncated();
  if (n_features != task_feature_count(m.config))
    return bad_file(origin, "feature count mismatch: the file declares " + std::to_string(n_features) +
                                " features per label, its config implies " +
                                std::to_string(task_feature_count(m.config)));
  if (n_labels * n_features > max_task_parameters)
    return bad_file(origin, std::to_string(n_labels) + " labels x " + std::to_string(n_features) +
                                " features exceed the limit of 2^26 weights");
  m.threshold = r.get<double>();
  std::string why = get_str(m.threshold_rule, max_rule_bytes, "threshold_rule");
  if (!why.empty()) return bad_file(origin, why);
  m.heldout_accuracy = r.get<double>();
  m.rows_trained = r.get<uint64_t>();
  if (why = get_str(m.notes, max_notes_bytes, "notes"); !why.empty()) return bad_file(origin, why);
  const uint32_t n_curve = r.get<uint32_t>();
  if (r.overrun) return truncated();
  if (n_curve > max_curve_points) return bad_file(origin, "curve field too long (corrupt header)");
  const uint64_t expected = r.pos + 24ULL * n_curve + 4ULL * n_labels * (n_features + 1) + 8;
  if (bytes.size() != expected)
    return bad_file(origin, (bytes.size() < expected ? "truncated: " : "trailing bytes: ") +
                                std::to_string(bytes.size()) + " bytes, the header implies " +
                                std::to_string(expected));
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != fnv1a64(bytes.substr(0, bytes.size() - 8)))
    return bad_file(origin, "checksum mismatch: the file is corrupt");
  m.curve.resize(n_curve);
  for (task_point& p : m.curve) {
    p.threshold = r.get<double>();
    p.answer_rate = r.get<double>();
    p.precision = r.get<double>();
  }
  r.get_floats(m.bias, n_labels);
  r.get_floats(m.weights, n_labels * n_features);
  if (r.overrun) return truncated();  // (not reachable after the size check; kept as the reader's contract)
  if (why = m.check(); !why.empty()) return bad_file(origin, why);
  return m;
}

}  // namespace sluice::router
