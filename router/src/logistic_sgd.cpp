// AdaGrad logistic regression, binary and softmax, over a CSR feature matrix (logistic_sgd.h). Trained model bytes
// depend on this exact order of operations: reordering the sums changes every model trained from now on.
#include "logistic_sgd.h"

namespace sluice::router::detail {

namespace {

// The epoch loop both fits share: `order` reshuffled by a generator seeded with opt.seed at the start of each epoch,
// then step(row) for each row, which updates the weights and returns the row's loss before the update.
template <class Step>
void run_epochs(std::vector<size_t> order, const sgd_options& opt, const sgd_progress& progress, Step&& step) {
  std::mt19937_64 rng(opt.seed);
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    shuffle(order, rng);
    double loss_sum = 0.0;
    for (size_t k = 0; k < order.size(); ++k) {
      loss_sum += step(order[k]);
      if (progress) progress(epoch, k + 1, loss_sum);
    }
  }
}

}  // namespace

linear_fit fit_logistic(const feature_matrix& fm, std::span<const double> labels, const sgd_options& opt,
                        const sgd_progress& progress) {
  const size_t rows = labels.size();
  std::vector<double> w(opt.n_features, 0.0), g2(opt.n_features, 0.0);
  double b = 0.0, gb = 0.0;
  std::vector<size_t> order(rows);
  for (size_t i = 0; i < rows; ++i) order[i] = i;
  run_epochs(std::move(order), opt, progress, [&](size_t r) {
    const size_t s = fm.row_start[r], e = fm.row_start[r + 1];
    double z = b;
    for (size_t j = s; j < e; ++j) z += w[fm.index[j]] * fm.value[j];
    const double p = sigmoid(z);
    const double loss = log_loss(p, labels[r]);
    const double g = p - labels[r];
    for (size_t j = s; j < e; ++j) {
      const uint32_t i = fm.index[j];
      adagrad(w[i], g2[i], g * fm.value[j] + opt.l2 * w[i], opt.learning_rate);
    }
    adagrad(b, gb, g, opt.learning_rate);
    return loss;
  });
  return linear_fit{std::move(w), b};
}

softmax_fit fit_softmax(const feature_matrix& fm, std::span<const uint32_t> classes, size_t n_classes,
                        std::span<const size_t> rows, const sgd_options& opt, const sgd_progress& progress) {
  const size_t nf = opt.n_features;
  std::vector<double> w(n_classes * nf, 0.0), g2(n_classes * nf, 0.0);  // (n_classes, nf)
  std::vector<double> b(n_classes, 0.0), gb(n_classes, 0.0);
  std::vector<double> p(n_classes);  // (n_classes) the row's probabilities, then the loss gradient of its scores
  run_epochs(std::vector<size_t>(rows.begin(), rows.end()), opt, progress, [&](size_t r) {
    const size_t s = fm.row_start[r], e = fm.row_start[r + 1];
    double top = -std::numeric_limits<double>::infinity();
    for (size_t c = 0; c < n_classes; ++c) {
      const double* wc = w.data() + c * nf;
      double z = b[c];
      for (size_t j = s; j < e; ++j) z += wc[fm.index[j]] * fm.value[j];
      p[c] = z;
      top = std::max(top, z);
    }
    double sum = 0.0;
    for (size_t c = 0; c < n_classes; ++c) sum += (p[c] = std::exp(p[c] - top));
    for (size_t c = 0; c < n_classes; ++c) p[c] /= sum;
    const uint32_t y = classes[r];
    const double loss = -std::log(std::max(p[y], 1e-12));
    p[y] -= 1.0;
    for (size_t c = 0; c < n_classes; ++c) {
      double* wc = w.data() + c * nf;
      double* gc = g2.data() + c * nf;
      for (size_t j = s; j < e; ++j) {
        const uint32_t i = fm.index[j];
        adagrad(wc[i], gc[i], p[c] * fm.value[j] + opt.l2 * wc[i], opt.learning_rate);
      }
      adagrad(b[c], gb[c], p[c], opt.learning_rate);
    }
    return loss;
  });
  return softmax_fit{std::move(w), std::move(b)};
}

}  // namespace sluice::router::detail
