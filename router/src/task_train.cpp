// Training the task tier's model: answers normalised into labels, multinomial logistic regression on the task
// features (the AdaGrad core shared with the other trainers, logistic_sgd.h) fitted on part of the rows; the
// threshold on the top label's probability is chosen on the held-out rest, then the weights are refit on every row
// with the same settings. Deterministic for a seed.
// What must not go in here: JSON, logs or files (the CLI reads rows), serving.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <random>

#include "logistic_sgd.h"
#include "sluice/router/acceptance.h"
#include "sluice/router/task_model.h"

namespace sluice::router {

namespace {

error bad_input(std::string message) { return error{errc::bad_request, std::move(message), {}}; }

std::string number(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

// An answer for a message: quoted, cut to 40 bytes.
std::string quoted(std::string_view answer) {
  return "'" + std::string(answer.substr(0, 40)) + (answer.size() > 40 ? "...'" : "'");
}

std::string check_options(const task_train_options& o) {
  if (std::string why = validate(o.config); !why.empty()) return "task config: " + why;
  if (!(o.heldout_fraction > 0.0 && o.heldout_fraction < 1.0)) return "heldout_fraction must be in (0, 1)";
  if (!(o.min_precision > 0.0 && o.min_precision <= 1.0)) return "min_precision must be in (0, 1]";
  if (o.min_rows < 1) return "min_rows must be at least 1";
  if (o.min_rows_per_label < 1) return "min_rows_per_label must be at least 1";
  if (o.max_labels < 2 || o.max_labels > max_task_labels)
    return "max_labels must be in 2.." + std::to_string(max_task_labels);
  if (o.epochs < 1 || o.epochs > 1000) return "epochs must be in 1..1000";
  if (!(o.learning_rate > 0.0) || !(o.l2 >= 0.0) || !std::isfinite(o.learning_rate) || !std::isfinite(o.l2))
    return "learning rate must be > 0 and l2 >= 0";
  if (o.notes.size() > 60000) return "notes longer than 60000 bytes";
  return {};
}

// The distinct answers: which become labels, which rows they keep, and what was dropped.
struct label_set {
  std::vector<std::string> labels;     // by decreasing count, then by name
  std::vector<size_t> counts;          // (labels)
  std::vector<size_t> row;             // indices of the kept rows, in input order
  std::vector<uint32_t> row_label;     // (row) the kept row's label index
  size_t empty = 0;                    // rows whose answer is nothing after normalisation
  size_t rare_answers = 0, rare_rows = 0;  // answers seen fewer than min_rows_per_label times, and their rows
};

result<label_set> find_labels(std::span<const std::string> answers, const task_train_options& o) {
  label_set out;
  std::vector<std::string> normalised(answers.size());
  std::map<std::string, size_t> counts;
  for (size_t i = 0; i < answers.size(); ++i) {
    normalised[i] = normalise_answer(answers[i]);
    if (normalised[i].empty()) ++out.empty;
    else ++counts[normalised[i]];
  }
  std::vector<std::pair<std::string, size_t>> by_count(counts.begin(), counts.end());
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::map<std::string, uint32_t> index;
  for (const auto& [answer, n] : by_count) {
    if (n < o.min_rows_per_label) {
      ++out.rare_answers;
      out.rare_rows += n;
      continue;
    }
    index.emplace(answer, static_cast<uint32_t>(out.labels.size()));
    out.labels.push_back(answer);
    out.counts.push_back(n);
  }
  const size_t answered = answers.size() - out.empty;
  // A label task repeats a few answers. Free text repeats none: many distinct answers, or most rows on rare ones.
  if (out.labels.size() > o.max_labels || (answered > 0 && 2 * out.rare_rows > answered)) {
    std::string examples;
    for (size_t i = 0; i < by_count.size() && i < 3; ++i) examples += (i ? ", " : "") + quoted(by_count[i].first);
    return bad_input("not a label task: " + std::to_string(by_count.size()) + " distinct answers, e.g. " + examples +
                     " (" + std::to_string(out.labels.size()) + " seen at least " +
                     std::to_string(o.min_rows_per_label) + " times, at most " + std::to_string(o.max_labels) +
                     " allowed; " + std::to_string(out.rare_rows) + " of " + std::to_string(answered) +
                     " rows have a rarer answer)");
  }
  for (const std::string& l : out.labels)
    if (l.size() > max_task_label_bytes)
      return bad_input("not a label task: the answer " + quoted(l) + " is longer than " +
                       std::to_string(max_task_label_bytes) + " bytes");
  if (out.labels.size() < 2) {
    std::string seen = out.labels.empty() ? std::string("none") : quoted(out.labels[0]);
    return bad_input("fewer than 2 labels: answers seen at least " + std::to_string(o.min_rows_per_label) +
                     " times: " + seen + " (" + std::to_string(by_count.size()) +
                     " distinct answers in all); a task model chooses between 2.." + std::to_string(o.max_labels));
  }
  for (size_t i = 0; i < answers.size(); ++i) {
    const auto it = index.find(normalised[i]);
    if (it == index.end()) continue;
    out.row.push_back(i);
    out.row_label.push_back(it->second);
  }
  return out;
}

// Accuracy, curve and threshold of a fitted model on the held-out rows.
struct heldout_report {
  double accuracy = 0.0;
  acceptance_threshold threshold;
  std::vector<task_point> curve;
};

heldout_report judge(const task_classifier& c, std::span<const std::string> queries, const label_set& ls,
                     const std::vector<size_t>& held, const task_train_options& o) {
  std::vector<double> top(held.size()), correct(held.size());
  for (size_t k = 0; k < held.size(); ++k) {
    const task_classifier::answer a = c.classify(queries[ls.row[held[k]]]);
    top[k] = a.confidence;
    correct[k] = a.label == ls.row_label[held[k]] ? 1.0 : 0.0;
  }
  heldout_report r;
  r.accuracy = std::accumulate(correct.begin(), correct.end(), 0.0) / static_cast<double>(held.size());
  r.threshold = choose_acceptance_threshold(top, correct, o.min_precision, std::nullopt, o.min_answered_rows);
  for (const acceptance_point& p : acceptance_curve_of_scores(top, correct, 21))
    r.curve.push_back({p.threshold, p.accept_rate, p.precision});
  // The chosen threshold's own point, so the file says exactly what was measured where the model will run.
  size_t answered = 0;
  double right = 0.0;
  for (size_t k = 0; k < top.size(); ++k) {
    if (top[k] >= r.threshold.threshold) {
      ++answered;
      right += correct[k];
    }
  }
  const task_point p{r.threshold.threshold, static_cast<double>(answered) / static_cast<double>(top.size()),
                     answered ? right / static_cast<double>(answered) : std::nan("")};
  auto pos = std::lower_bound(r.curve.begin(), r.curve.end(), p.threshold,
                              [](const task_point& a, double t) { return a.threshold < t; });
  if (pos == r.curve.end() || pos->threshold != p.threshold) r.curve.insert(pos, p);
  return r;
}

std::vector<float> to_floats(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

}  // namespace

result<task_model> train_task_model(std::span<const std::string> queries, std::span<const std::string> answers,
                                    const task_train_options& options) {
  if (queries.size() != answers.size()) return bad_input("queries and answers differ in length");
  if (std::string why = check_options(options); !why.empty()) return bad_input(why);
  result<label_set> found = find_labels(answers, options);
  if (!found) return found.error();
  const label_set& ls = *found;
  const size_t n = ls.row.size(), n_labels = ls.labels.size();
  if (n < options.min_rows)
    return bad_input("too little data: " + std::to_string(n) + " usable rows, at least " +
                     std::to_string(options.min_rows) + " needed (" + std::to_string(answers.size()) + " given; " +
                     std::to_string(ls.rare_rows) + " with rare answers and " + std::to_string(ls.empty) +
                     " with empty answers dropped)");
  const size_t n_features = task_feature_count(options.config);
  if (n_labels * n_features > max_task_parameters)
    return bad_input(std::to_string(n_labels) + " labels x 2^" + std::to_string(options.config.hash_bits) +
                     " features exceed the limit of 2^26 weights: lower hash_bits");

  // Held-out rows: a seeded shuffle's first share. Both parts keep the rows' order.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 split_rng(options.seed ^ 0x68656c646f7574ULL);  // "heldout": independent of the epochs' order
  detail::shuffle(order, split_rng);
  const size_t n_held = static_cast<size_t>(std::floor(options.heldout_fraction * static_cast<double>(n)));
  if (n_held == 0 || n_held == n)
    return bad_input("heldout_fraction " + number("%g", options.heldout_fraction) + " of " + std::to_string(n) +
                     " rows leaves no " + (n_held == 0 ? "held-out rows" : "rows to fit"));
  std::vector<size_t> held(order.begin(), order.begin() + static_cast<ptrdiff_t>(n_held));
  std::vector<size_t> fit(order.begin() + static_cast<ptrdiff_t>(n_held), order.end());
  std::sort(held.begin(), held.end());
  std::sort(fit.begin(), fit.end());

  // Matrix row k is kept row k (input row ls.row[k]).
  detail::feature_matrix fm;
  fm.row_start.reserve(n + 1);
  sparse_features f;
  for (size_t k = 0; k < n; ++k) {
    extract_task_features(options.config, queries[ls.row[k]], f);
    fm.append(f);
  }
  const detail::sgd_options sgd{n_features, options.epochs, options.learning_rate, options.l2, options.seed};

  heldout_report report;
  {
    task_model held_model;  // fitted without the held-out rows, to judge them
    held_model.config = options.config;
    held_model.labels = ls.labels;
    detail::softmax_fit held_fit = detail::fit_softmax(fm, ls.row_label, n_labels, fit, sgd, {});
    held_model.weights = to_floats(held_fit.weights);
    held_model.bias = to_floats(held_fit.bias);
    result<task_classifier> c = task_classifier::from_model(std::move(held_model));
    if (!c) return error{errc::internal, "training diverged: " + c.error().message, {}};
    report = judge(*c, queries, ls, held, options);
  }
  task_model m;
  m.config = options.config;
  m.labels = ls.labels;
  m.threshold = report.threshold.threshold;
  m.curve = std::move(report.curve);
  m.heldout_accuracy = report.accuracy;
  m.threshold_rule = number("min_precision=%.4g", options.min_precision);
  if (!report.threshold.target_met)
    m.threshold_rule += " (not reached with >= " + std::to_string(options.min_answered_rows) +
                        " answered held-out rows: highest score)";

  // Production gets every row: refit from scratch with the same settings; the threshold stays the held-out one.
  std::vector<size_t> all(n);
  std::iota(all.begin(), all.end(), size_t{0});
  {
    detail::softmax_fit full = detail::fit_softmax(fm, ls.row_label, n_labels, all, sgd, {});
    m.weights = to_floats(full.weights);
    m.bias = to_floats(full.bias);
  }
  m.rows_trained = n;

  std::string notes = options.notes;
  auto note = [&](const std::string& s) {
    if (!notes.empty()) notes += "\n";
    notes += s;
  };
  std::string label_counts;
  for (size_t l = 0; l < n_labels; ++l) label_counts += (l ? ", " : "") + ls.labels[l] + " " + std::to_string(ls.counts[l]);
  note("rows " + std::to_string(n) + " (labels: " + label_counts + "); dropped " + std::to_string(ls.rare_rows) +
       " rows of " + std::to_string(ls.rare_answers) + " answers seen fewer than " +
       std::to_string(options.min_rows_per_label) + " times, " + std::to_string(ls.empty) + " empty answers");
  note("held out " + std::to_string(held.size()) + " rows (seed " + std::to_string(options.seed) + "), fit on " +
       std::to_string(fit.size()) + ": held-out accuracy " + number("%.4f", m.heldout_accuracy) + ", threshold " +
       number("%.6f", m.threshold) + " (" + m.threshold_rule + ")");
  if (!report.threshold.target_met)
    note("warning: the precision target was not reached on the held-out rows: the threshold is the highest score");
  note("the weights were then refit on all " + std::to_string(n) + " rows with the same settings (epochs " +
       std::to_string(options.epochs) + ", learning rate " + number("%g", options.learning_rate) + ", l2 " +
       number("%g", options.l2) + "); the threshold, curve and accuracy are those of the held-out split");
  if (notes.size() > 60000) notes.resize(60000);
  m.notes = std::move(notes);
  if (std::string why = m.check(); !why.empty()) return error{errc::internal, "training diverged: " + why, {}};
  return m;
}

}  // namespace sluice::router
