// The training core the learned models share (train.cpp: the router classifier; acceptance_train.cpp: the
// cascade's acceptance model; task_train.cpp: the task tier's model): rows' sparse features in CSR form, seeded
// shuffling, and AdaGrad SGD on log-loss for binary and multinomial (softmax) logistic regression. Single-threaded and seeded, so the same inputs give bit-identical weights.
// What must not go in here: feature extraction, model files, anything that knows which model is being trained.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "sluice/router/features.h"

namespace sluice::router::detail {

// Rows' features, computed once before the epochs: CSR layout.
struct feature_matrix {
  std::vector<size_t> row_start = {0};  // (rows + 1)
  std::vector<uint32_t> index;
  std::vector<float> value;

  void append(const sparse_features& f) {
    index.insert(index.end(), f.index.begin(), f.index.end());
    value.insert(value.end(), f.value.begin(), f.value.end());
    row_start.push_back(index.size());
  }
  size_t rows() const { return row_start.size() - 1; }
};

// Uniform in [0, 1) from the top 53 bits: defined exactly, unlike std::uniform_real_distribution.
inline double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

inline void shuffle(std::vector<size_t>& order, std::mt19937_64& rng) {
  for (size_t i = order.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(unit(rng) * static_cast<double>(i));
    std::swap(order[i - 1], order[std::min(j, i - 1)]);
  }
}

inline double log_loss(double p, double y) {
  const double eps = 1e-12;
  return -(y * std::log(std::max(p, eps)) + (1 - y) * std::log(std::max(1 - p, eps)));
}

inline double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// AdaGrad step for one coordinate.
inline void adagrad(double& w, double& g2, double grad, double lr) {
  g2 += grad * grad;
  w -= lr * grad / (std::sqrt(g2) + 1e-8);
}

struct sgd_options {
  size_t n_features = 0;  // weights to learn; every index in the matrix is below this
  int epochs = 1;
  double learning_rate = 0.1;  // AdaGrad base rate
  double l2 = 0.0;             // L2 penalty per update on the weights a row touches
  uint64_t seed = 1;           // the row order of each epoch
};

struct linear_fit {
  std::vector<double> weights;  // (n_features)
  double bias = 0.0;
};

// Called after every row: (epoch 1-based, rows done in this epoch, summed log-loss of those rows). May be empty.
using sgd_progress = std::function<void(int epoch, size_t rows_done, double loss_sum)>;

// Logistic regression by AdaGrad SGD over rows in a seeded random order each epoch; labels[i] in [0, 1].
linear_fit fit_logistic(const feature_matrix& fm, std::span<const double> labels, const sgd_options& opt,
                        const sgd_progress& progress);

struct softmax_fit {
  std::vector<double> weights;  // (n_classes, n_features) row-major: one row per class
  std::vector<double> bias;     // (n_classes)
};

// Multinomial logistic regression by AdaGrad SGD (one accumulator per weight), fitted on the matrix rows listed in
// `rows` (in a seeded random order each epoch; the list's own order matters only through that shuffle).
// classes[r] in [0, n_classes) is matrix row r's class; n_classes >= 2.
softmax_fit fit_softmax(const feature_matrix& fm, std::span<const uint32_t> classes, size_t n_classes,
                        std::span<const size_t> rows, const sgd_options& opt, const sgd_progress& progress);

}  // namespace sluice::router::detail
