// Loading, saving and scoring for the router classifier. Scoring streams features straight into the weights
// (features_stream.h), so no feature vector is ever built and nothing is allocated per request.
// What must not go in here: training, file layout details (router_model_file.cpp).
#include "sluice/router/classifier.h"

#include <cmath>
#include <fstream>
#include <iterator>

#include "features_stream.h"

namespace sluice::router {

namespace {

// Logistic regression: one running sum per feature block (the block is a template argument, so the sums stay in
// registers), scaled at the end.
struct linear_sink {
  const float* w;
  float sum[detail::block_count] = {};
  double total = 0.0;
  template <detail::block B>
  void add(uint32_t index, float value) {
    sum[B] += w[index] * value;
  }
  void finish(const float (&scale)[detail::block_count]) {
    for (int b = 0; b < detail::block_count; ++b) total += static_cast<double>(sum[b]) * scale[b];
  }
};

// One hidden layer: per block, a running (H) vector of W rows; scaled and summed at the end.
struct hidden_sink {
  const float* w;  // (n_features, H)
  uint32_t h;
  float acc[detail::block_count][max_hidden_units] = {};
  float pre[max_hidden_units] = {};  // (H) pre-activations, filled by finish()
  template <detail::block B>
  void add(uint32_t index, float value) {
    const float* row = w + static_cast<size_t>(index) * h;
    float* a = acc[B];
    for (uint32_t k = 0; k < h; ++k) a[k] += row[k] * value;
  }
  void finish(const float (&scale)[detail::block_count]) {
    for (uint32_t k = 0; k < h; ++k)
      pre[k] = acc[0][k] * scale[0] + acc[1][k] * scale[1] + acc[2][k] * scale[2];
  }
};

}  // namespace

result<classifier> classifier::from_model(router_model model) {
  if (std::string why = model.check(); !why.empty())
    return error{errc::internal, "router model: " + why, {}};
  return classifier(std::move(model));
}

result<classifier> classifier::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error{errc::internal, "router model '" + path + "': cannot open the file", {}};
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return error{errc::internal, "router model '" + path + "': read error", {}};
  result<router_model> m = decode_router_model(bytes, "router model '" + path + "'");
  if (!m) return m.error();
  return classifier(std::move(*m));
}

result<void> classifier::save(const std::string& path) const {
  const std::string bytes = encode_router_model(model_);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return error{errc::internal, "router model '" + path + "': cannot open for writing", {}};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) return error{errc::internal, "router model '" + path + "': write failed", {}};
  return {};
}

double classifier::logit(const chat_request& request) const {
  const router_model& m = model_;
  if (m.hidden_units == 0) {
    linear_sink sink{m.input_weights.data()};
    detail::stream_features(m.features, request, sink);
    return sink.total + m.output_bias;
  }
  hidden_sink sink{m.input_weights.data(), m.hidden_units};
  detail::stream_features(m.features, request, sink);
  double z = m.output_bias;
  for (uint32_t k = 0; k < m.hidden_units; ++k)
    z += static_cast<double>(m.output_weights[k]) * std::tanh(sink.pre[k] + m.hidden_bias[k]);
  return z;
}

double classifier::score(const chat_request& request) const {
  const double z = logit(request);
  return 1.0 / (1.0 + std::exp(-z));
}

}  // namespace sluice::router
