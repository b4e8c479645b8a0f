// Router training: AdaGrad SGD on log-loss over the sparse features, single-threaded and seeded so that the
// same inputs give byte-identical models (the logistic-regression core is shared with the acceptance trainer:
// logistic_sgd.h). Also file reading (gzip via zlib), labels and splits for the CLI.
// What must not go in here: JSON, metrics, scoring at serving time.
#include "sluice/router/train.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "features_stream.h"
#include "logistic_sgd.h"

namespace sluice::router {

namespace {

using detail::adagrad;
using detail::feature_matrix;
using detail::log_loss;
using detail::shuffle;
using detail::sigmoid;
using detail::unit;

feature_matrix build_matrix(const feature_config& cfg, std::span<const chat_request> requests) {
  feature_matrix fm;
  fm.row_start.reserve(requests.size() + 1);
  sparse_features f;
  for (const chat_request& r : requests) {
    extract_features(cfg, r, f);
    fm.append(f);
  }
  return fm;
}

struct progress_reporter {
  const train_options& opt;
  size_t rows;
  size_t every;
  void operator()(int epoch, size_t done, double loss_sum) const {
    if (!opt.progress) return;
    if (done % every != 0 && done != rows) return;
    opt.progress({epoch, opt.epochs, done, rows, done ? loss_sum / static_cast<double>(done) : 0.0});
  }
};

router_model train_linear(const feature_matrix& fm, std::span<const double> labels, const train_options& opt) {
  const progress_reporter report{opt, labels.size(), std::max<size_t>(1, labels.size() / 100)};
  const detail::sgd_options sgd{feature_count(opt.features), opt.epochs, opt.learning_rate, opt.l2, opt.seed};
  detail::sgd_progress progress;
  if (opt.progress) progress = [&](int epoch, size_t done, double loss_sum) { report(epoch, done, loss_sum); };
  detail::linear_fit fit = detail::fit_logistic(fm, labels, sgd, progress);
  router_model m;
  m.features = opt.features;
  m.input_weights.assign(fit.weights.begin(), fit.weights.end());
  m.output_bias = static_cast<float>(fit.bias);
  m.notes = opt.notes;
  return m;
}

router_model train_hidden(const feature_matrix& fm, std::span<const double> labels, const train_options& opt) {
  const size_t n_features = feature_count(opt.features);
  const uint32_t h = opt.hidden_units;
  const size_t rows = labels.size();
  std::mt19937_64 rng(opt.seed);
  std::vector<double> w1(n_features * h), g1(n_features * h, 0.0);  // (n_features, H)
  std::vector<double> b1(h, 0.0), gb1(h, 0.0), w2(h), g2(h, 0.0);
  double b2 = 0.0, gb2 = 0.0;
  for (double& x : w1) x = (unit(rng) - 0.5) * 0.2;
  const double out_scale = 2.0 / std::sqrt(static_cast<double>(h));
  for (double& x : w2) x = (unit(rng) - 0.5) * out_scale;
  std::vector<double> a(h), hid(h), da(h);
  std::vector<size_t> order(rows);
  for (size_t i = 0; i < rows; ++i) order[i] = i;
  const progress_reporter report{opt, rows, std::max<size_t>(1, rows / 100)};
  for (int epoch = 1; epoch <= opt.epochs; ++epoch) {
    shuffle(order, rng);
    double loss_sum = 0.0;
    for (size_t k = 0; k < rows; ++k) {
      const size_t r = order[k];
      const size_t s = fm.row_start[r], e = fm.row_start[r + 1];
      std::copy(b1.begin(), b1.end(), a.begin());
      for (size_t j = s; j < e; ++j) {
        const double* row = &w1[static_cast<size_t>(fm.index[j]) * h];
        for (uint32_t u = 0; u < h; ++u) a[u] += row[u] * fm.value[j];
      }
      double z = b2;
      for (uint32_t u = 0; u < h; ++u) {
        hid[u] = std::tanh(a[u]);
        z += w2[u] * hid[u];
      }
      const double p = sigmoid(z);
      loss_sum += log_loss(p, labels[r]);
      const double dz = p - labels[r];
      for (uint32_t u = 0; u < h; ++u) {
        da[u] = dz * w2[u] * (1.0 - hid[u] * hid[u]);
        adagrad(w2[u], g2[u], dz * hid[u] + opt.l2 * w2[u], opt.learning_rate);
        adagrad(b1[u], gb1[u], da[u], opt.learning_rate);
      }
      adagrad(b2, gb2, dz, opt.learning_rate);
      for (size_t j = s; j < e; ++j) {
        const size_t row = static_cast<size_t>(fm.index[j]) * h;
        for (uint32_t u = 0; u < h; ++u)
          adagrad(w1[row + u], g1[row + u], da[u] * fm.value[j] + opt.l2 * w1[row + u], opt.learning_rate);
      }
      report(epoch, k + 1, loss_sum);
    }
  }
  router_model m;
  m.features = opt.features;
  m.hidden_units = h;
  m.input_weights.assign(w1.begin(), w1.end());
  m.hidden_bias.assign(b1.begin(), b1.end());
  m.output_weights.assign(w2.begin(), w2.end());
  m.output_bias = static_cast<float>(b2);
  m.notes = opt.notes;
  return m;
}

}  // namespace

result<router_model> train_router(std::span<const chat_request> requests, std::span<const double> labels,
                                  const train_options& options) {
  if (requests.empty()) return error{errc::bad_request, "no training rows", {}};
  if (labels.size() != requests.size()) return error{errc::bad_request, "requests and labels differ in length", {}};
  for (double y : labels)
    if (!(y >= 0.0 && y <= 1.0)) return error{errc::bad_request, "labels must lie in [0, 1]", {}};
  if (std::string_view why = validate(options.features); !why.empty())
    return error{errc::bad_request, "feature config: " + std::string(why), {}};
  if (options.hidden_units > max_hidden_units)
    return error{errc::bad_request, "hidden units above " + std::to_string(max_hidden_units), {}};
  if (options.epochs < 1 || options.epochs > 1000) return error{errc::bad_request, "epochs must be in 1..1000", {}};
  if (!(options.learning_rate > 0.0) || !(options.l2 >= 0.0))
    return error{errc::bad_request, "learning rate must be > 0 and l2 >= 0", {}};
  const feature_matrix fm = build_matrix(options.features, requests);
  router_model m = options.hidden_units == 0 ? train_linear(fm, labels, options) : train_hidden(fm, labels, options);
  if (std::string why = m.check(); !why.empty()) return error{errc::internal, "training diverged: " + why, {}};
  return m;
}

std::optional<label_kind> parse_label_kind(std::string_view name) {
  if (name == "weak_wrong") return label_kind::weak_wrong;
  if (name == "strong_better") return label_kind::strong_better;
  if (name == "gain") return label_kind::gain;
  return std::nullopt;
}

std::optional<double> row_label(const routing_row& row, label_kind kind) {
  switch (kind) {
    case label_kind::weak_wrong: return 1.0 - row.weak_correct;
    case label_kind::strong_better: return row.strong_correct > row.weak_correct ? 1.0 : 0.0;
    case label_kind::gain: return (row.strong_correct - row.weak_correct + 1.0) / 2.0;
    case label_kind::field: return row.label_field;
  }
  return std::nullopt;
}

chat_request request_from_prompt(std::string_view prompt) {
  chat_request r;
  message m;
  m.role_ = role::user;
  m.content = std::string(prompt);
  r.messages.push_back(std::move(m));
  return r;
}

std::string_view split_group(const routing_row& row) { return row.domain.empty() ? row.id : row.domain; }

bool in_holdout(std::string_view group_key, double fraction, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ULL ^ detail::mix64(seed);
  for (unsigned char c : group_key) h = (h ^ c) * 0x100000001b3ULL;
  const double u = static_cast<double>(detail::mix64(h) >> 11) * 0x1.0p-53;
  return u < fraction;
}

result<std::string> read_file_maybe_gzip(const std::string& path) {
  // gzread passes plain files through unchanged, so one path serves .jsonl and .jsonl.gz.
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) return error{errc::bad_request, "cannot open '" + path + "'", {}};
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof buf);
    if (n < 0) {
      int code = 0;
      std::string why = gzerror(f, &code);
      gzclose(f);
      return error{errc::bad_request, "cannot read '" + path + "': " + why, {}};
    }
    if (n == 0) {
      int code = Z_OK;
      const char* why = gzerror(f, &code);
      if (code != Z_OK && code != Z_STREAM_END) {
        std::string msg = why;
        gzclose(f);
        return error{errc::bad_request, "cannot read '" + path + "': " + msg, {}};
      }
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  gzclose(f);
  return out;
}

}  // namespace sluice::router
