// The acceptance model file format: encode and validate-on-decode. What must not go in here: scoring or training.
//
// Layout (little-endian, no padding; str = u32 byte count, then the bytes):
//   magic "SLUICEAM" (8 bytes) | u32 format_version | u32 acceptance_extractor_version
//   u32 hash_bits | u32 word_ngram_max | u32 hash_seed | u32 top_logprobs | u32 n_labels | str label[n_labels]
//   u64 n_features | f32 bias | f64 threshold | str threshold_rule | str local_model_id | str notes
//   u32 n_curve | (f64 threshold, f64 accept_rate, f64 precision)[n_curve]
//   f32 weights[n_features]
//   u64 checksum: FNV-1a 64 over every byte before it
#include <cmath>
#include <cstring>

#include "binary_io.h"
#include "sluice/router/acceptance.h"

namespace sluice::router {

namespace {

using detail::all_finite;
using detail::bad_file;
using detail::fnv1a64;
using detail::put;
using detail::put_str;
using detail::reader;
using detail::unit_interval;

constexpr detail::model_file_kind file_kind{"SLUICEAM", "acceptance model", 1, acceptance_extractor_version,
                                            "acceptance feature extractor", "retrain the model"};
constexpr uint32_t max_label_bytes = 64;
constexpr uint32_t max_rule_bytes = 1 << 12;
constexpr uint32_t max_model_id_bytes = 1 << 10;
constexpr uint32_t max_notes_bytes = 1 << 16;
constexpr uint32_t max_curve_points = 1 << 12;

}  // namespace

std::string acceptance_model::check() const {
  if (std::string why = validate(config); !why.empty()) return "config: " + why;
  const size_t n = acceptance_feature_count(config);
  if (weights.size() != n)
    return "weights has " + std::to_string(weights.size()) + " values, the config needs " + std::to_string(n);
  if (!std::isfinite(bias) || !all_finite(weights)) return "a weight is not finite";
  if (!unit_interval(threshold)) return "threshold must lie in [0, 1]";
  if (threshold_rule.size() > max_rule_bytes) return "threshold_rule longer than 4 KiB";
  if (local_model_id.size() > max_model_id_bytes) return "local_model_id longer than 1 KiB";
  if (notes.size() > max_notes_bytes) return "notes longer than 64 KiB";
  return detail::check_curve<&acceptance_point::accept_rate>(curve, max_curve_points);
}

std::string encode_acceptance_model(const acceptance_model& m) {
  std::string out;
  out.reserve(128 + m.notes.size() + m.threshold_rule.size() + m.local_model_id.size() + 24 * m.curve.size() +
              4 * m.weights.size());
  out.append(file_kind.magic);
  put<uint32_t>(out, file_kind.format_version);
  put<uint32_t>(out, file_kind.extractor_version);
  put<uint32_t>(out, m.config.hash_bits);
  put<uint32_t>(out, m.config.word_ngram_max);
  put<uint32_t>(out, m.config.hash_seed);
  put<uint32_t>(out, m.config.top_logprobs);
  put<uint32_t>(out, static_cast<uint32_t>(m.config.labels.size()));
  for (const std::string& l : m.config.labels) put_str(out, l);
  put<uint64_t>(out, m.weights.size());
  put<float>(out, m.bias);
  put<double>(out, m.threshold);
  put_str(out, m.threshold_rule);
  put_str(out, m.local_model_id);
  put_str(out, m.notes);
  detail::put_curve<&acceptance_point::accept_rate>(out, m.curve);
  detail::put_floats(out, m.weights);
  put<uint64_t>(out, fnv1a64(out));
  return out;
}

result<acceptance_model> decode_acceptance_model(std::string_view bytes, std::string_view origin) {
  reader r;
  if (auto e = detail::open_model_file(bytes, file_kind, origin, r)) return *e;
  acceptance_model m;
  m.config.hash_bits = r.get<uint32_t>();
  m.config.word_ngram_max = r.get<uint32_t>();
  m.config.hash_seed = r.get<uint32_t>();
  m.config.top_logprobs = r.get<uint32_t>();
  const uint32_t n_labels = r.get<uint32_t>();
  if (r.overrun) return detail::truncated_file(origin, bytes.size());
  if (n_labels > max_acceptance_labels)
    return bad_file(origin, std::to_string(n_labels) + " labels, at most " + std::to_string(max_acceptance_labels));
  for (uint32_t i = 0; i < n_labels; ++i) {
    if (!r.get_str(m.config.labels.emplace_back(), max_label_bytes))
      return bad_file(origin, "label field too long (corrupt header)");
  }
  const uint64_t n_features = r.get<uint64_t>();
  if (r.overrun) return detail::truncated_file(origin, bytes.size());
  if (std::string why = validate(m.config); !why.empty()) return bad_file(origin, "invalid config: " + why);
  if (n_features != acceptance_feature_count(m.config))
    return bad_file(origin, "feature count mismatch: the file declares " + std::to_string(n_features) +
                                " weights, its config implies " + std::to_string(acceptance_feature_count(m.config)));
  m.bias = r.get<float>();
  m.threshold = r.get<double>();
  if (!r.get_str(m.threshold_rule, max_rule_bytes)) return bad_file(origin, "threshold_rule field too long (corrupt header)");
  if (!r.get_str(m.local_model_id, max_model_id_bytes))
    return bad_file(origin, "local_model_id field too long (corrupt header)");
  if (!r.get_str(m.notes, max_notes_bytes)) return bad_file(origin, "notes field too long (corrupt header)");
  const uint32_t n_curve = r.get<uint32_t>();
  if (n_curve > max_curve_points) return bad_file(origin, "curve field too long (corrupt header)");
  if (r.overrun) return detail::truncated_file(origin, bytes.size());
  if (auto e = detail::check_model_file_end(bytes, r.pos + 24ULL * n_curve + 4ULL * n_features + 8, origin)) return *e;
  detail::get_curve<&acceptance_point::accept_rate>(r, m.curve, n_curve);
  r.get_floats(m.weights, n_features);
  if (r.overrun) return detail::truncated_file(origin, bytes.size());  // (unreachable after the size check)
  if (std::string why = m.check(); !why.empty()) return bad_file(origin, why);
  return m;
}

}  // namespace sluice::router
