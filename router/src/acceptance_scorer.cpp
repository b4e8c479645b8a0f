// Loading, saving and scoring for the cascade's acceptance model. Scoring streams features straight into the
// weights (acceptance_stream.h), so no feature vector is built and nothing is allocated per answer.
// What must not go in here: training, file layout details (acceptance_model_file.cpp).
#include <cmath>
#include <fstream>
#include <iterator>

#include "acceptance_stream.h"
#include "sluice/router/acceptance.h"

namespace sluice::router {

namespace {

// Logistic regression: one running sum per feature block (the block is a template argument, so the sums stay in
// registers), scaled at the end.
struct linear_sink {
  const float* w;
  float sum[detail::ab_count] = {};
  double total = 0.0;
  template <detail::acceptance_block B>
  void add(uint32_t index, float value) {
    sum[B] += w[index] * value;
  }
  void finish(const float (&scale)[detail::ab_count]) {
    for (int b = 0; b < detail::ab_count; ++b) total += static_cast<double>(sum[b]) * scale[b];
  }
};

}  // namespace

result<acceptance_scorer> acceptance_scorer::from_model(acceptance_model model) {
  if (std::string why = model.check(); !why.empty()) return error{errc::internal, "acceptance model: " + why, {}};
  return acceptance_scorer(std::move(model));
}

result<acceptance_scorer> acceptance_scorer::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error{errc::internal, "acceptance model '" + path + "': cannot open the file", {}};
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return error{errc::internal, "acceptance model '" + path + "': read error", {}};
  result<acceptance_model> m = decode_acceptance_model(bytes, "acceptance model '" + path + "'");
  if (!m) return m.error();
  return acceptance_scorer(std::move(*m));
}

result<void> acceptance_scorer::save(const std::string& path) const {
  const std::string bytes = encode_acceptance_model(model_);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return error{errc::internal, "acceptance model '" + path + "': cannot open for writing", {}};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) return error{errc::internal, "acceptance model '" + path + "': write failed", {}};
  return {};
}

double acceptance_scorer::score(const answer_signals& signals) const {
  linear_sink sink{model_.weights.data()};
  detail::stream_acceptance_features(model_.config, signals, sink);
  const double z = sink.total + model_.bias;
  return 1.0 / (1.0 + std::exp(-z));
}

result<void> acceptance_scorer::check_local_model(std::string_view local_model_id) const {
  if (model_.local_model_id.empty() || model_.local_model_id == local_model_id) return {};
  return error{errc::internal,
               "acceptance model was trained on answers of local model " + model_.local_model_id +
                   ", but the local tier runs " + (local_model_id.empty() ? "an unidentified model" :
                                                                              std::string(local_model_id)) +
                   ": retrain it on this model's answers",
               {}};
}

}  // namespace sluice::router
