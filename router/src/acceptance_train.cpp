// Training the acceptance model: logistic regression on the acceptance features (the AdaGrad core shared with
// the router trainer, logistic_sgd.h), fitted on part of the rows; the threshold is chosen on the held-out
// calibration rows and stored with the curve it came from. Deterministic for a seed.
// What must not go in here: JSON or files (the CLI reads rows), scoring at serving time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>

#include "logistic_sgd.h"
#include "sluice/router/acceptance.h"

namespace sluice::router {

namespace {

error bad_input(std::string message) { return error{errc::bad_request, std::move(message), {}}; }

std::string format_rate(const char* name, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s=%.4g", name, value);
  return buf;
}

// Scores as thresholds: NaN (never produced by a valid model) ranks lowest, so sorting stays well defined.
std::vector<double> clean_scores(std::span<const double> scores) {
  std::vector<double> out(scores.begin(), scores.end());
  for (double& s : out)
    if (std::isnan(s)) s = -std::numeric_limits<double>::infinity();
  return out;
}

// Row indices by increasing (or decreasing) score; ties keep index order, for determinism.
std::vector<size_t> rank(const std::vector<double>& scores, bool decreasing) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return decreasing ? scores[a] > scores[b] : scores[a] < scores[b];
  });
  return order;
}

}  // namespace

std::vector<acceptance_point> acceptance_curve_of_scores(std::span<const double> raw_scores,
                                                         std::span<const double> labels, int n_points) {
  std::vector<acceptance_point> curve;
  if (raw_scores.empty() || raw_scores.size() != labels.size()) return curve;
  n_points = std::clamp(n_points, 2, 1000);
  const std::vector<double> scores = clean_scores(raw_scores);
  const size_t m = scores.size();
  const std::vector<size_t> order = rank(scores, false);
  std::vector<double> positives_from(m + 1, 0.0);  // (m + 1) label sum over sorted rows [i, m)
  for (size_t i = m; i-- > 0;) positives_from[i] = positives_from[i + 1] + labels[order[i]];
  for (int k = 0; k < n_points; ++k) {
    // Thresholds at score quantiles, from the lowest score (accept everything) to the highest.
    const size_t at = static_cast<size_t>(k) * (m - 1) / static_cast<size_t>(n_points - 1);
    const double t = scores[order[at]];
    if (!curve.empty() && curve.back().threshold == t) continue;
    size_t first = at;  // the first sorted row with score >= t
    while (first > 0 && scores[order[first - 1]] >= t) --first;
    const size_t accepted = m - first;
    curve.push_back({t, static_cast<double>(accepted) / static_cast<double>(m),
                     positives_from[first] / static_cast<double>(accepted)});
  }
  return curve;
}

std::vector<acceptance_point> acceptance_curve(const acceptance_scorer& scorer, std::span<const answer_signals> rows,
                                               std::span<const double> labels, int n_points) {
  if (rows.size() != labels.size()) return {};
  std::vector<double> scores;
  scores.reserve(rows.size());
  for (const answer_signals& r : rows) scores.push_back(scorer.score(r));
  return acceptance_curve_of_scores(scores, labels, n_points);
}

acceptance_threshold choose_acceptance_threshold(std::span<const double> raw_scores, std::span<const double> labels,
                                                 std::optional<double> min_precision,
                                                 std::optional<double> max_escalation_rate, size_t min_accepted_rows) {
  acceptance_threshold out;
  if (!min_precision && !max_escalation_rate) {
    out.rule = "default=0.5";
    return out;
  }
  const size_t m = std::min(raw_scores.size(), labels.size());
  if (m == 0) {
    out.rule = min_precision ? format_rate("min_precision", *min_precision) + " (no rows: default 0.5)"
                             : format_rate("max_escalation_rate", *max_escalation_rate) + " (no rows: default 0.5)";
    out.target_met = false;
    return out;
  }
  const std::vector<double> scores = clean_scores(raw_scores.first(m));
  const std::vector<size_t> order = rank(scores, true);
  // Walk the distinct scores from the highest down; after each group of equal scores, `accepted` rows score >= t.
  double positives = 0.0;
  std::optional<double> chosen;
  for (size_t i = 0; i < m;) {
    const double t = scores[order[i]];
    for (; i < m && scores[order[i]] == t; ++i) positives += labels[order[i]];
    const size_t accepted = i;
    if (min_precision) {
      // The lowest threshold that qualifies: keep overwriting while walking down.
      if (accepted >= min_accepted_rows && positives / static_cast<double>(accepted) >= *min_precision - 1e-12)
        chosen = t;
    } else {
      // The highest threshold whose escalated share (rows below it) is within the target: the first one found.
      const double escalated = static_cast<double>(m - accepted) / static_cast<double>(m);
      if (escalated <= *max_escalation_rate + 1e-12) {
        chosen = t;
        break;
      }
    }
  }
  if (min_precision) {
    out.rule = format_rate("min_precision", *min_precision);
    if (!chosen) {
      // Unreachable target: the strictest threshold the rows offer, and the rule says the target was missed.
      chosen = scores[order[0]];
      out.target_met = false;
      out.rule += " (not reached with >= " + std::to_string(min_accepted_rows) +
                  " accepted rows: highest threshold)";
    }
  } else {
    out.rule = format_rate("max_escalation_rate", *max_escalation_rate);
  }
  out.threshold = std::clamp(*chosen, 0.0, 1.0);
  return out;
}

size_t acceptance_calibration_rows(size_t rows, double calibration_fraction) {
  if (!(calibration_fraction > 0.0)) return 0;
  const double held_out = std::floor(std::min(calibration_fraction, 1.0) * static_cast<double>(rows));
  return std::min(rows, static_cast<size_t>(held_out));
}

result<acceptance_model> train_acceptance(std::span<const answer_signals> rows, std::span<const double> labels,
                                          const acceptance_train_options& options) {
  if (rows.empty()) return bad_input("no training rows");
  if (labels.size() != rows.size()) return bad_input("rows and labels differ in length");
  for (double y : labels)
    if (!(y >= 0.0 && y <= 1.0)) return bad_input("labels must lie in [0, 1]");
  if (std::string why = validate(options.config); !why.empty()) return bad_input("acceptance config: " + why);
  if (options.min_precision && options.max_escalation_rate)
    return bad_input("give at most one target: min_precision or max_escalation_rate");
  if (options.min_precision && !(*options.min_precision > 0.0 && *options.min_precision <= 1.0))
    return bad_input("min_precision must be in (0, 1]");
  if (options.max_escalation_rate && !(*options.max_escalation_rate >= 0.0 && *options.max_escalation_rate <= 1.0))
    return bad_input("max_escalation_rate must be in [0, 1]");
  if (!(options.calibration_fraction >= 0.0 && options.calibration_fraction < 1.0))
    return bad_input("calibration_fraction must be in [0, 1)");
  if (options.epochs < 1 || options.epochs > 1000) return bad_input("epochs must be in 1..1000");
  if (options.local_model_id.size() > 1024) return bad_input("local_model_id longer than 1 KiB");
  if (options.notes.size() > 60000) return bad_input("notes longer than 60000 bytes");
  if (!(options.learning_rate > 0.0) || !(options.l2 >= 0.0) || !std::isfinite(options.learning_rate) ||
      !std::isfinite(options.l2))
    return bad_input("learning rate must be > 0 and l2 >= 0");

  // Calibration rows: a seeded shuffle's first share. Both parts keep the rows' order.
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::mt19937_64 split_rng(options.seed ^ 0x63616c6962ULL);  // "calib": independent of the epochs' order
  detail::shuffle(order, split_rng);
  const size_t n_cal = acceptance_calibration_rows(rows.size(), options.calibration_fraction);
  if (n_cal >= rows.size()) return bad_input("no rows left to fit after the calibration split");
  std::vector<size_t> cal(order.begin(), order.begin() + static_cast<ptrdiff_t>(n_cal));
  std::vector<size_t> fit(order.begin() + static_cast<ptrdiff_t>(n_cal), order.end());
  std::sort(cal.begin(), cal.end());
  std::sort(fit.begin(), fit.end());

  detail::feature_matrix fm;
  fm.row_start.reserve(fit.size() + 1);
  std::vector<double> fit_labels;
  fit_labels.reserve(fit.size());
  sparse_features f;
  for (size_t i : fit) {
    extract_acceptance_features(options.config, rows[i], f);
    fm.append(f);
    fit_labels.push_back(labels[i]);
  }
  const detail::sgd_options sgd{acceptance_feature_count(options.config), options.epochs, options.learning_rate,
                                options.l2, options.seed};
  detail::linear_fit lf = detail::fit_logistic(fm, fit_labels, sgd, {});

  acceptance_model m;
  m.config = options.config;
  m.weights.assign(lf.weights.begin(), lf.weights.end());
  m.bias = static_cast<float>(lf.bias);
  m.local_model_id = options.local_model_id;
  m.notes = options.notes;
  result<acceptance_scorer> scorer = acceptance_scorer::from_model(m);
  if (!scorer) return error{errc::internal, "training diverged: " + scorer.error().message, {}};

  // The threshold is chosen on rows the fit never saw; with no calibration rows, on the fitting rows (optimistic).
  const std::vector<size_t>& judged = cal.empty() ? fit : cal;
  std::vector<double> scores, judged_labels;
  scores.reserve(judged.size());
  judged_labels.reserve(judged.size());
  for (size_t i : judged) {
    scores.push_back(scorer->score(rows[i]));
    judged_labels.push_back(labels[i]);
  }
  const acceptance_threshold th = choose_acceptance_threshold(scores, judged_labels, options.min_precision,
                                                              options.max_escalation_rate, options.min_accepted_rows);
  m.threshold = th.threshold;
  m.threshold_rule = th.rule;
  m.curve = acceptance_curve_of_scores(scores, judged_labels, 21);
  // The chosen threshold's own point, so the file says exactly what was measured where the model will run.
  {
    size_t accepted = 0;
    double positives = 0.0;
    for (size_t i = 0; i < scores.size(); ++i) {
      if (scores[i] >= m.threshold) {
        ++accepted;
        positives += judged_labels[i];
      }
    }
    const acceptance_point p{m.threshold, static_cast<double>(accepted) / static_cast<double>(scores.size()),
                             accepted ? positives / static_cast<double>(accepted) : std::nan("")};
    auto pos = std::lower_bound(m.curve.begin(), m.curve.end(), p.threshold,
                                [](const acceptance_point& a, double t) { return a.threshold < t; });
    if (pos == m.curve.end() || pos->threshold != p.threshold) m.curve.insert(pos, p);
  }
  auto append_note = [&](const std::string& s) {
    if (!m.notes.empty()) m.notes += "\n";
    m.notes += s;
  };
  append_note("fit rows " + std::to_string(fit.size()) + ", calibration rows " + std::to_string(cal.size()) +
              ", threshold " + std::to_string(m.threshold) + " (" + th.rule + ")");
  if (cal.empty()) append_note("no calibration rows: threshold and curve measured on the fitting rows (optimistic)");
  if (!th.target_met) append_note("warning: the precision target was not reached on the calibration rows");
  if (std::string why = m.check(); !why.empty()) return error{errc::internal, "training diverged: " + why, {}};
  return m;
}

}  // namespace sluice::router
