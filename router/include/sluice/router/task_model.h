// A task tier's model: a classifier over the request's text that answers a label task (one of a declared set of
// labels) in microseconds, with a confidence. Distilled from a route's own traffic (the frontier's logged answers,
// corrected by feedback) by `sluice distill`; served as the cheapest tier of a route (`kind: task`), where its
// confidence against the threshold chosen at training time decides whether it answers or the route escalates.
// What must not go in here: reading logs or JSON (the CLI does that), tier choice (the cascade).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/router/chat.h"
#include "sluice/router/error.h"
#include "sluice/router/features.h"

namespace sluice::router {

// Bumped whenever extract_task_features changes what a given config produces; stored in model files.
inline constexpr uint32_t task_extractor_version = 1;
inline constexpr size_t max_task_labels = 64;
inline constexpr size_t max_task_label_bytes = 64;
// labels x 2^hash_bits may not exceed this (256 MiB of float weights; training holds 4x that in doubles).
inline constexpr size_t max_task_parameters = size_t{1} << 26;

struct task_config {
  uint32_t hash_bits = 18;      // the hashed block has 2^hash_bits slots (8..24)
  uint32_t word_ngram_max = 2;  // word n-grams of the query tail, 1..3
  uint32_t char_ngram_max = 0;  // character n-grams 3..char_ngram_max of the query tail (0 = none; at most 5)
  uint32_t hash_seed = 0x7a5c0u;
  friend bool operator==(const task_config&, const task_config&) = default;
};
std::string validate(const task_config& config);  // empty when usable

struct task_point {
  double threshold = 0.0;    // answer when the top probability >= threshold
  double answer_rate = 0.0;  // share of held-out rows answered
  double precision = 0.0;    // share of answered rows whose label matches the reference (NaN when none)
};

// Multinomial logistic regression over hashed n-grams of the query tail (the text after the last blank line of
// the request's last user message or prompt, as for the acceptance model).
struct task_model {
  task_config config;
  std::vector<std::string> labels;  // the answers, as the tier returns them; 2..max_task_labels, distinct
  std::vector<float> weights;       // (labels.size(), task_feature_count(config)), row-major: one row per label
  std::vector<float> bias;          // (labels.size())
  double threshold = 0.5;           // answer when the top label's probability >= threshold
  std::string threshold_rule;       // e.g. "min_precision=0.95"
  std::vector<task_point> curve;    // on held-out rows, by increasing threshold
  double heldout_accuracy = 0.0;    // top label vs the reference on held-out rows, answering all of them
  uint64_t rows_trained = 0;
  std::string notes;                // data, options: informational

  std::string check() const;  // empty when sizes agree and every parameter is finite
};

size_t task_feature_count(const task_config& config);  // 2^hash_bits: the hashed block is the whole vector

// The query text a request stands for (last user message, or the completions prompt) and its tail.
std::string_view task_query_tail(std::string_view query);

// Allocating form of the features of a query's tail (task_query_tail is applied here), for training and tests;
// serving folds them straight into the scores. An invalid config (validate() not empty) yields no features.
void extract_task_features(const task_config& config, std::string_view query, sparse_features& out);

std::string encode_task_model(const task_model& model);
result<task_model> decode_task_model(std::string_view bytes, std::string_view origin = "task model");

class task_classifier {
 public:
  static result<task_classifier> load(const std::string& path);  // errors name the file
  static result<task_classifier> from_model(task_model model);

  struct answer {
    size_t label = 0;         // index into model().labels
    double confidence = 0.0;  // the label's probability
  };
  // Thread-safe; no allocation; microseconds.
  answer classify(std::string_view query) const;
  answer classify(const chat_request& request) const;
  const task_model& model() const { return model_; }
  result<void> save(const std::string& path) const;

 private:
  explicit task_classifier(task_model model);
  task_model model_;
  // (task_feature_count, labels): model_.weights transposed, so that one feature's weights for every label are
  // adjacent (one cache line for up to 16 labels instead of one per label). Twice the memory, for serving speed.
  std::vector<float> weights_by_feature_;
};

struct task_train_options {
  task_config config;
  double heldout_fraction = 0.2;         // rows held out of fitting: curve, threshold, accuracy (chosen by seed)
  // The lowest threshold whose held-out precision reaches this. Precision is agreement with the references (the
  // frontier's answers, wrong ~15% of the time on HEADLINES): set it at or above the frontier's own accuracy,
  // as for the acceptance model. Measured on HEADLINES (bench/flywheel/run, 4,000 logged rows): 0.86 serves
  // 82% at 0.94 accuracy; 0.8 serves 96% at 0.89; 0.95 serves 50%.
  double min_precision = 0.86;
  size_t min_answered_rows = 20;         // ... among thresholds answering at least this many held-out rows
  size_t min_rows = 200;                 // fewer rows (after dropping rare answers) is an error
  size_t min_rows_per_label = 5;         // answers seen fewer times are dropped (counted in notes)
  size_t max_labels = max_task_labels;   // more distinct answers than this is an error (not a label task)
  int epochs = 10;
  double learning_rate = 0.1;
  double l2 = 1e-6;
  uint64_t seed = 1;
  std::string notes;
};

// queries[i] is the request text, answers[i] the reference answer (a frontier's, or a correction). Answers are
// normalised (trimmed, lower case) into labels; the result says why when the data cannot make a label task.
result<task_model> train_task_model(std::span<const std::string> queries, std::span<const std::string> answers,
                                    const task_train_options& options);

}  // namespace sluice::router
