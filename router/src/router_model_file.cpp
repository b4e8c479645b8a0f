// The router model file format: encode and validate-on-decode. What must not go in here: scoring or training.
//
// Layout (little-endian, no padding):
//   magic "SLUICERM" (8 bytes) | u32 format_version | u32 feature_extractor_version
//   u32 hash_bits | u32 word_ngram_max | u32 char_ngram_min | u32 char_ngram_max | u32 hash_seed | u32 format_cues
//   u32 hidden_units (H) | u64 n_features | u64 n_input_weights | u32 notes_bytes | notes
//   f32 output_bias | f32 hidden_bias[H] | f32 output_weights[H] | f32 input_weights[n_input_weights]
//   u64 checksum: FNV-1a 64 over every byte before it
#include <cmath>
#include <cstring>

#include "binary_io.h"
#include "sluice/router/classifier.h"

namespace sluice::router {

namespace {

using detail::bad_file;
using detail::fnv1a64;
using detail::put;
using detail::put_floats;
using detail::reader;

constexpr char magic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'R', 'M'};
constexpr uint32_t format_version = 1;
constexpr size_t fixed_header_bytes = 8 + 4 * 9 + 8 * 2 + 4;  // up to and including notes_bytes
constexpr uint32_t max_notes_bytes = 1 << 16;

}  // namespace

std::string router_model::check() const {
  if (std::string_view why = validate(features); !why.empty()) return "feature config: " + std::string(why);
  if (hidden_units > max_hidden_units) return "hidden_units above " + std::to_string(max_hidden_units);
  const size_t n = feature_count(features);
  const size_t want = n * (hidden_units ? hidden_units : 1);
  if (input_weights.size() != want)
    return "input_weights has " + std::to_string(input_weights.size()) + " values, the feature config needs " +
           std::to_string(want);
  if (hidden_bias.size() != hidden_units || output_weights.size() != hidden_units)
    return "hidden layer sizes do not match hidden_units";
  if (notes.size() > max_notes_bytes) return "notes longer than 64 KiB";
  auto finite = [](const std::vector<float>& v) {
    for (float x : v)
      if (!std::isfinite(x)) return false;
    return true;
  };
  if (!std::isfinite(output_bias) || !finite(input_weights) || !finite(hidden_bias) || !finite(output_weights))
    return "a parameter is not finite";
  return {};
}

std::string encode_router_model(const router_model& m) {
  std::string out;
  out.reserve(fixed_header_bytes + m.notes.size() + 4 * (1 + m.input_weights.size() + 2 * m.hidden_units) + 8);
  out.append(magic, sizeof magic);
  put<uint32_t>(out, format_version);
  put<uint32_t>(out, feature_extractor_version);
  put<uint32_t>(out, m.features.hash_bits);
  put<uint32_t>(out, m.features.word_ngram_max);
  put<uint32_t>(out, m.features.char_ngram_min);
  put<uint32_t>(out, m.features.char_ngram_max);
  put<uint32_t>(out, m.features.hash_seed);
  put<uint32_t>(out, m.features.format_cues);
  put<uint32_t>(out, m.hidden_units);
  put<uint64_t>(out, feature_count(m.features));
  put<uint64_t>(out, m.input_weights.size());
  put<uint32_t>(out, static_cast<uint32_t>(m.notes.size()));
  out += m.notes;
  put<float>(out, m.output_bias);
  put_floats(out, m.hidden_bias);
  put_floats(out, m.output_weights);
  put_floats(out, m.input_weights);
  put<uint64_t>(out, fnv1a64(out));
  return out;
}

result<router_model> decode_router_model(std::string_view bytes, std::string_view origin) {
  if (bytes.size() < fixed_header_bytes || std::memcmp(bytes.data(), magic, sizeof magic) != 0) {
    if (bytes.size() >= sizeof magic && std::memcmp(bytes.data(), magic, sizeof magic) == 0)
      return bad_file(origin, "truncated (" + std::to_string(bytes.size()) + " bytes, shorter than the header)");
    return bad_file(origin, "not a Sluice router model (bad magic)");
  }
  reader r{bytes, sizeof magic};
  const uint32_t version = r.get<uint32_t>();
  if (version != format_version)
    return bad_file(origin, "unsupported format version " + std::to_string(version) + " (this build reads " +
                                std::to_string(format_version) + ")");
  const uint32_t extractor = r.get<uint32_t>();
  if (extractor != feature_extractor_version)
    return bad_file(origin, "trained with feature extractor version " + std::to_string(extractor) +
                                ", this build extracts version " + std::to_string(feature_extractor_version) +
                                ": retrain the model");
  router_model m;
  m.features.hash_bits = r.get<uint32_t>();
  m.features.word_ngram_max = r.get<uint32_t>();
  m.features.char_ngram_min = r.get<uint32_t>();
  m.features.char_ngram_max = r.get<uint32_t>();
  m.features.hash_seed = r.get<uint32_t>();
  m.features.format_cues = r.get<uint32_t>();
  m.hidden_units = r.get<uint32_t>();
  const uint64_t n_features = r.get<uint64_t>();
  const uint64_t n_input = r.get<uint64_t>();
  const uint32_t notes_bytes = r.get<uint32_t>();
  if (std::string_view why = validate(m.features); !why.empty())
    return bad_file(origin, "invalid feature config: " + std::string(why));
  if (m.hidden_units > max_hidden_units)
    return bad_file(origin, "hidden_units " + std::to_string(m.hidden_units) + " above " +
                                std::to_string(max_hidden_units));
  if (n_features != feature_count(m.features))
    return bad_file(origin, "feature config mismatch: the file declares " + std::to_string(n_features) +
                                " features, its config implies " + std::to_string(feature_count(m.features)));
  const uint64_t want_input = n_features * (m.hidden_units ? m.hidden_units : 1);
  if (n_input != want_input)
    return bad_file(origin, "weight count mismatch: " + std::to_string(n_input) + " input weights, the config needs " +
                                std::to_string(want_input));
  if (notes_bytes > max_notes_bytes) return bad_file(origin, "notes field too long (corrupt header)");
  const uint64_t expected =
      fixed_header_bytes + notes_bytes + 4ULL * (1 + 2ULL * m.hidden_units + n_input) + 8;
  if (bytes.size() != expected)
    return bad_file(origin, (bytes.size() < expected ? "truncated: " : "trailing bytes: ") +
                                std::to_string(bytes.size()) + " bytes, the header implies " +
                                std::to_string(expected));
  uint64_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (stored != fnv1a64(bytes.substr(0, bytes.size() - 8)))
    return bad_file(origin, "checksum mismatch: the file is corrupt");
  m.notes.assign(bytes.substr(r.pos, notes_bytes));
  r.pos += notes_bytes;
  m.output_bias = r.get<float>();
  r.get_floats(m.hidden_bias, m.hidden_units);
  r.get_floats(m.output_weights, m.hidden_units);
  r.get_floats(m.input_weights, n_input);
  if (std::string why = m.check(); !why.empty()) return bad_file(origin, why);
  return m;
}

}  // namespace sluice::router
