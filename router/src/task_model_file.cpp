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

using detail::all_finite;
using detail::bad_file;
using detail::fnv1a64;
using detail::put;
using detail::put_str;
using detail::reader;
using detail::unit_interval;

constexpr detail::model_file_kind file_kind{"SLUICETM", "task model", 1, task_extractor_version,
                                            "task feature extractor", "distill the model again"};
constexpr uint32_t max_rule_bytes = 1 << 12;
constexpr uint32_t max_notes_bytes = 1 << 16;
constexpr uint32_t max_curve_points = 1 << 12;

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
  if (!all_finite(bias) || !all_finite(weights)) return "a weight is not finite";
  if (!unit_interval(threshold)) return "threshold must lie in [0, 1]";
  if (!unit_interval(heldout_accuracy)) return "heldout_accuracy must lie in [0, 1]";
  if (threshold_rule.size() > max_rule_bytes) return "threshold_rule longer than 4 KiB";
  if (notes.size() > max_notes_bytes) return "notes longer than 64 KiB";
  return detail::check_curve<&task_point::answer_rate>(curve, max_curve_points);
}

std::string encode_task_model(const task_model& m) {
  std::string out;
  size_t label_bytes = 0;
  for (const std::string& l : m.labels) label_bytes += 4 + l.size();
  out.reserve(128 + label_bytes + m.threshold_rule.size() + m.notes.size() + 24 * m.curve.size() +
              4 * (m.bias.size() + m.weights.size()));
  out.append(file_kind.magic);
  put<uint32_t>(out, file_kind.format_version);
  put<uint32_t>(out, file_kind.extractor_version);
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
  detail::put_curve<&task_point::answer_rate>(out, m.curve);
  detail::put_floats(out, m.bias);
  detail::put_floats(out, m.weights);
  put<uint64_t>(out, fnv1a64(out));
  return out;
}

result<task_model> decode_task_model(std::string_view bytes, std::string_view origin) {
  reader r;
  if (auto e = detail::open_model_file(bytes, file_kind, origin, r)) return *e;
  auto truncated = [&] { return detail::truncated_file(origin, bytes.size()); };
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
  for (uint32_t i = 0; i < n_labels; ++i) {
    if (!r.get_str(m.labels.emplace_back(), max_task_label_bytes))
      return bad_file(origin, "label field too long (corrupt header)");
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
  if (!r.get_str(m.threshold_rule, max_rule_bytes)) return bad_file(origin, "threshold_rule field too long (corrupt header)");
  m.heldout_accuracy = r.get<double>();
  m.rows_trained = r.get<uint64_t>();
  if (!r.get_str(m.notes, max_notes_bytes)) return bad_file(origin, "notes field too long (corrupt header)");
  const uint32_t n_curve = r.get<uint32_t>();
  if (r.overrun) return truncated();
  if (n_curve > max_curve_points) return bad_file(origin, "curve field too long (corrupt header)");
  if (auto e = detail::check_model_file_end(bytes, r.pos + 24ULL * n_curve + 4ULL * n_labels * (n_features + 1) + 8,
                                            origin)) {
    return *e;
  }
  detail::get_curve<&task_point::answer_rate>(r, m.curve, n_curve);
  r.get_floats(m.bias, n_labels);
  r.get_floats(m.weights, n_labels * n_features);
  if (r.overrun) return truncated();  // (not reachable after the size check; kept as the reader's contract)
  if (std::string why = m.check(); !why.empty()) return bad_file(origin, why);
  return m;
}

}  // namespace sluice::router
