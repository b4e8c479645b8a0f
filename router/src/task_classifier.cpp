// Loading, saving and serving the task tier's model. Classifying streams the query tail's features straight into
// one running score per label (task_stream.h): no feature vector is built and nothing is allocated per request.
// The classifier keeps the weights transposed (feature-major) beside the model's label-major copy: a feature's
// weights for all labels then share a cache line, which is what the serving time is made of.
// What must not go in here: training, the file layout (task_model_file.cpp).
#include <cmath>
#include <fstream>
#include <iterator>

#include "features_stream.h"
#include "sluice/router/task_model.h"
#include "task_stream.h"

namespace sluice::router {

namespace {

// One running sum per (block, label), scaled by the block's factor at the end. Weights are feature-major
// (n_features x labels), so a feature reads its labels' weights from one place.
struct softmax_sink {
  const float* w;  // (n_features, labels)
  size_t labels;
  float sum[detail::tb_count][max_task_labels];
  float scale[detail::tb_count] = {};
  softmax_sink(const float* weights_by_feature, size_t n_labels) : w(weights_by_feature), labels(n_labels) {
    for (auto& block : sum)
      for (size_t l = 0; l < labels; ++l) block[l] = 0.0f;
  }
  template <detail::task_block B>
  void add(uint32_t index, float value) {
    const float* row = w + static_cast<size_t>(index) * labels;
    for (size_t l = 0; l < labels; ++l) sum[B][l] += row[l] * value;
  }
  void finish(const float (&s)[detail::tb_count]) {
    for (int b = 0; b < detail::tb_count; ++b) scale[b] = s[b];
  }
};

}  // namespace

task_classifier::task_classifier(task_model model) : model_(std::move(model)) {
  const size_t n_labels = model_.labels.size(), n_features = task_feature_count(model_.config);
  weights_by_feature_.resize(model_.weights.size());
  for (size_t l = 0; l < n_labels; ++l)
    for (size_t f = 0; f < n_features; ++f) weights_by_feature_[f * n_labels + l] = model_.weights[l * n_features + f];
}

result<task_classifier> task_classifier::from_model(task_model model) {
  if (std::string why = model.check(); !why.empty()) return error{errc::internal, "task model: " + why, {}};
  return task_classifier(std::move(model));
}

result<task_classifier> task_classifier::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return error{errc::internal, "task model '" + path + "': cannot open the file", {}};
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return error{errc::internal, "task model '" + path + "': read error", {}};
  result<task_model> m = decode_task_model(bytes, "task model '" + path + "'");
  if (!m) return m.error();
  return task_classifier(std::move(*m));
}

result<void> task_classifier::save(const std::string& path) const {
  const std::string bytes = encode_task_model(model_);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return error{errc::internal, "task model '" + path + "': cannot open for writing", {}};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) return error{errc::internal, "task model '" + path + "': write failed", {}};
  return {};
}

task_classifier::answer task_classifier::classify(std::string_view query) const {
  const size_t n_labels = model_.labels.size();
  softmax_sink sink(weights_by_feature_.data(), n_labels);
  detail::stream_task_features(model_.config, detail::query_tail(query), sink);
  double z[max_task_labels];
  size_t best = 0;
  for (size_t l = 0; l < n_labels; ++l) {
    z[l] = static_cast<double>(model_.bias[l]);
    for (int b = 0; b < detail::tb_count; ++b) z[l] += static_cast<double>(sink.sum[b][l]) * sink.scale[b];
    if (z[l] > z[best]) best = l;  // ties: the lowest index
  }
  // The top label's softmax probability: 1 / sum_l exp(z_l - z_best), each term in (0, 1].
  double denominator = 0.0;
  for (size_t l = 0; l < n_labels; ++l) denominator += std::exp(z[l] - z[best]);
  return answer{best, 1.0 / denominator};
}

task_classifier::answer task_classifier::classify(const chat_request& request) const {
  size_t focus_index = 0;
  return classify(detail::focus_text(request, focus_index));
}

}  // namespace sluice::router
