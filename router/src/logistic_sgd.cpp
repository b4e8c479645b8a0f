// AdaGrad logistic regression over a CSR feature matrix (logistic_sgd.h). Trained model bytes depend on this
// exact order of operations: reordering the sums changes every model trained from now on.
#include "logistic_sgd.h"

namespace sluice::router::detail {

linear_fit fit_logistic(const feature_matrix& fm, std::span<const double> labels, const sgd_options& opt,
                        const sgd_progress& progress) {
  const size_t rows = labels.size();
  std::vector<double> w(opt.n_features, 0.0), g2(opt.n_features, 0.0);
  double b = 0.0, gb = 0.0;
  std::mt19937_64 rng(opt.seed);
  std::vector<size_t> order(rows);
  for (size_t i = 0; i < rows; ++i) order[i] = i;
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    shuffle(order, rng);
    double loss_sum = 0.0;
    for (size_t k = 0; k < rows; ++k) {
      const size_t r = order[k];
      const size_t s = fm.row_start[r], e = fm.row_start[r + 1];
      double z = b;
      for (size_t j = s; j < e; ++j) z += w[fm.index[j]] * fm.value[j];
      const double p = sigmoid(z);
      loss_sum += log_loss(p, labels[r]);
      const double g = p - labels[r];
      for (size_t j = s; j < e; ++j) {
        const uint32_t i = fm.index[j];
        adagrad(w[i], g2[i], g * fm.value[j] + opt.l2 * w[i], opt.learning_rate);
      }
      adagrad(b, gb, g, opt.learning_rate);
      if (progress) progress(epoch, k + 1, loss_sum);
    }
  }
  return linear_fit{std::move(w), b};
}

}  // namespace sluice::router::detail
