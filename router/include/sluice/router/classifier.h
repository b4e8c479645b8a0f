// The router's learned request classifier: scores a chat_request with the probability that the small model will
// not be good enough (higher = send to the stronger tier). Loaded once from a versioned model file that carries
// its own feature configuration; scoring is thread-safe, allocation-free and takes microseconds.
// What must not go in here: training (train.h), thresholds or tier choice (the cascade decides with the score).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/router/chat.h"
#include "sluice/router/error.h"
#include "sluice/router/features.h"

namespace sluice::router {

inline constexpr uint32_t max_hidden_units = 64;

// The parameters of a trained router. hidden_units == 0: logistic regression, score = sigmoid(b + w.x).
// hidden_units == H > 0: one tanh hidden layer, score = sigmoid(b + v.tanh(c + W x)).
struct router_model {
  feature_config features;
  uint32_t hidden_units = 0;
  std::vector<float> input_weights;   // LR: (n_features); MLP: (n_features, H) row-major, one row per feature
  std::vector<float> hidden_bias;     // (H)
  std::vector<float> output_weights;  // (H)
  float output_bias = 0.0f;
  std::string notes;  // how it was trained (label, data, options): informational, kept in the file

  // Empty when sizes agree with the config and every parameter is finite; otherwise what is wrong.
  std::string check() const;
};

// Serialises a model to the versioned file format (see router_model_file.cpp for the layout).
std::string encode_router_model(const router_model& model);
// Parses and validates a model file's bytes: magic, format version, extractor version, feature config, sizes,
// checksum, finite parameters. `origin` names the file in error messages.
result<router_model> decode_router_model(std::string_view bytes, std::string_view origin = "router model");

class classifier {
 public:
  // Reads and validates a model file; a missing, truncated, corrupt or mismatched file is an error value.
  static result<classifier> load(const std::string& path);
  static result<classifier> from_model(router_model model);

  // In [0, 1]: the probability that the small model is not good enough for this request.
  double score(const chat_request& request) const;
  // The raw score before the sigmoid (a log-odds), for diagnostics.
  double logit(const chat_request& request) const;

  const router_model& model() const { return model_; }
  result<void> save(const std::string& path) const;

 private:
  explicit classifier(router_model model) : model_(std::move(model)) {}
  router_model model_;
};

}  // namespace sluice::router
