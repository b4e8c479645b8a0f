// The cascade's acceptance model: after the local tier answered, the probability that its answer is good
// enough to serve (FrugalGPT's scorer over query and answer, with the answer's own log-prob statistics).
// Features come from answer_signals, which the cascade fills at serve time, the decision log records, and
// labelled training rows carry, so a model is served with exactly the features it was trained on.
// What must not go in here: tier choice or validators (cascade), JSON or files other than the model file.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/router/chat.h"
#include "sluice/router/error.h"
#include "sluice/router/features.h"

namespace sluice::router {

// Bumped whenever extract_acceptance_features changes what a given config produces; stored in model files.
inline constexpr uint32_t acceptance_extractor_version = 1;

// A label task allows at most this many answers (each has a one-hot dense slot).
inline constexpr size_t max_acceptance_labels = 16;

// What the local tier's answer tells about itself: the inputs of the acceptance decision.
struct answer_signals {
  // The text the request asks about: the last user message (chat) or the prompt (completions). Features read
  // its tail after the last blank line ("\n\n"), so a shared few-shot prefix does not drown the question.
  std::string query;
  std::string answer;  // the local answer's text, as generated
  finish_reason finish = finish_reason::stop;
  std::vector<double> token_logprobs;  // one per generated token (natural log)
  std::vector<std::pair<std::string, double>> first_top_logprobs;  // the first token's alternatives, best first
  std::optional<double> pre_score;     // the route's pre-score, when the route computes one
};

struct acceptance_config {
  uint32_t hash_bits = 18;        // the hashed block has 2^hash_bits slots (8..24)
  uint32_t word_ngram_max = 2;    // word n-grams of the query tail, 1..3
  uint32_t hash_seed = 0xacce97u;
  uint32_t top_logprobs = 5;      // alternatives the local tier must report per token (1..20)
  std::vector<std::string> labels;  // the answers a label task allows (normalised: trimmed, lower case); may be empty
                                    // (at most max_acceptance_labels, distinct, each 1..64 bytes)
  friend bool operator==(const acceptance_config&, const acceptance_config&) = default;
};

// Empty when the config is usable; otherwise says which field is wrong.
std::string validate(const acceptance_config& config);

// One point of the acceptance curve measured on calibration rows (not used for fitting).
struct acceptance_point {
  double threshold = 0.0;    // accept when score >= threshold
  double accept_rate = 0.0;  // share of rows accepted
  double precision = 0.0;    // share of accepted rows whose label is 1 (NaN when none is accepted)
};

struct acceptance_model {
  acceptance_config config;
  std::vector<float> weights;  // (acceptance_feature_count(config))
  float bias = 0.0f;
  double threshold = 0.5;      // accept when score >= threshold
  std::string threshold_rule;  // how it was chosen, e.g. "min_precision=0.90" or "max_escalation_rate=0.50"
  std::vector<acceptance_point> curve;  // on the calibration rows, by increasing threshold
  std::string local_model_id;  // "sha256:<hex>" of the GGUF whose answers trained it; "" = not pinned
  std::string notes;           // data, options: informational

  std::string check() const;  // empty when sizes agree and every parameter is finite
};

// Dense features (answer statistics, see acceptance_features.cpp for the table) occupy [0, acceptance_dense_count);
// hashed n-grams of the query tail, the answer, and their conjunctions occupy the 2^hash_bits slots after them.
inline constexpr size_t acceptance_dense_count = 37;
size_t acceptance_feature_count(const acceptance_config& config);
std::string_view acceptance_dense_feature_name(size_t slot);  // "" past the dense block

// The answer as a label: trimmed of whitespace and surrounding punctuation, lower case.
std::string normalise_answer(std::string_view answer);
// Index of the normalised answer in config.labels, or nullopt.
std::optional<size_t> label_index(const acceptance_config& config, std::string_view answer);

// Allocating form, for training and tests (serving folds features straight into the score). An invalid config
// (validate() not empty) yields no features.
void extract_acceptance_features(const acceptance_config& config, const answer_signals& signals, sparse_features& out);

std::string encode_acceptance_model(const acceptance_model& model);
result<acceptance_model> decode_acceptance_model(std::string_view bytes, std::string_view origin = "acceptance model");

class acceptance_scorer {
 public:
  static result<acceptance_scorer> load(const std::string& path);  // errors name the file
  static result<acceptance_scorer> from_model(acceptance_model model);

  // In [0, 1]: the probability that the answer is good enough to serve. Thread-safe; no allocation.
  double score(const answer_signals& signals) const;
  const acceptance_model& model() const { return model_; }
  // Error unless the model is unpinned or pinned to exactly this local model id ("sha256:<hex>"): a model is only
  // valid for the local model whose answers trained it. The error names both ids.
  result<void> check_local_model(std::string_view local_model_id) const;
  result<void> save(const std::string& path) const;

 private:
  explicit acceptance_scorer(acceptance_model model) : model_(std::move(model)) {}
  acceptance_model model_;
};

// Training: logistic regression on the acceptance features, fitted on part of the rows; the threshold is chosen
// on the rest (the calibration rows) for the target, and the curve there is stored with the model.
struct acceptance_train_options {
  acceptance_config config;
  double calibration_fraction = 0.25;  // rows held out of fitting to choose the threshold (chosen by seed)
  // At most one target; with neither, the threshold is 0.5.
  std::optional<double> min_precision;        // lowest threshold whose calibration precision reaches this, in (0, 1]
  // The highest threshold (best precision) that still escalates at most this share, in [0, 1]. (The lowest such
  // threshold would always be the lowest score, accepting everything.)
  std::optional<double> max_escalation_rate;
  size_t min_accepted_rows = 20;  // min_precision counts only thresholds that accept at least this many rows
  int epochs = 10;
  double learning_rate = 0.1;
  double l2 = 1e-5;
  uint64_t seed = 1;
  std::string local_model_id;
  std::string notes;
};

// How many of `rows` train_acceptance holds out for calibration: floor(rows * calibration_fraction).
size_t acceptance_calibration_rows(size_t rows, double calibration_fraction);

// labels[i] = 1 when the local answer of row i is good enough (correct), 0 otherwise.
result<acceptance_model> train_acceptance(std::span<const answer_signals> rows, std::span<const double> labels,
                                          const acceptance_train_options& options);

// The curve over `n_points` thresholds (score quantiles) on rows the model has not seen. Empty when the rows are
// empty or rows and labels differ in length.
std::vector<acceptance_point> acceptance_curve(const acceptance_scorer& scorer, std::span<const answer_signals> rows,
                                               std::span<const double> labels, int n_points = 21);
// The same from scores already computed (scores[i] for the row labelled labels[i]).
std::vector<acceptance_point> acceptance_curve_of_scores(std::span<const double> scores, std::span<const double> labels,
                                                         int n_points = 21);

// The threshold rule of train_acceptance, on scores already computed. Candidates are the distinct scores.
struct acceptance_threshold {
  double threshold = 0.5;
  std::string rule;        // stored as acceptance_model::threshold_rule
  bool target_met = true;  // false: no threshold reached min_precision; the highest score was taken instead
};
acceptance_threshold choose_acceptance_threshold(std::span<const double> scores, std::span<const double> labels,
                                                 std::optional<double> min_precision,
                                                 std::optional<double> max_escalation_rate,
                                                 size_t min_accepted_rows = 20);

}  // namespace sluice::router
