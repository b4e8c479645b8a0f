// Training the router classifier from plain structs: requests with labels in [0, 1] in, a router_model out.
// Deterministic: the same rows, options and seed give byte-identical model files. Also the small pieces the
// train/eval CLI shares with tests: reading (optionally gzipped) files, routing-data rows, labels and splits.
// What must not go in here: JSON parsing (the CLI parses JSONL), scoring (classifier.h), metrics.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/router/chat.h"
#include "sluice/router/classifier.h"
#include "sluice/router/error.h"
#include "sluice/router/features.h"

namespace sluice::router {

struct train_progress {
  int epoch = 0;  // 1-based
  int epochs = 0;
  size_t rows_done = 0;  // within this epoch
  size_t rows_total = 0;
  double mean_loss = 0.0;  // mean log-loss over this epoch's rows so far
};

struct train_options {
  feature_config features;
  uint32_t hidden_units = 0;  // 0 = logistic regression; else a tanh hidden layer of this width
  int epochs = 8;
  double learning_rate = 0.1;  // AdaGrad base rate
  double l2 = 1e-5;            // L2 penalty per update on the weights a row touches
  uint64_t seed = 1;           // shuffling and initialisation
  std::string notes;           // stored in the model file
  std::function<void(const train_progress&)> progress;  // called about 100 times per epoch; may be empty
};

// labels[i] in [0, 1] (soft labels allowed) is the target probability that request i needs the strong model.
result<router_model> train_router(std::span<const chat_request> requests, std::span<const double> labels,
                                  const train_options& options);

// One row of the routing benchmark data (data/routing): plain fields, parsed by the CLI.
struct routing_row {
  std::string id;
  std::string domain;  // MMLU subject; empty for GSM8K
  std::string prompt;
  double weak_correct = 0.0;
  double strong_correct = 0.0;
  bool contaminated = false;
  std::optional<double> label_field;  // the value of a custom --label field, when one was asked for
};

// Which target a row trains towards. weak_wrong: 1 - weak_correct ("the small model is not good enough"),
// strong_better: strong_correct > weak_correct, gain: (strong - weak + 1) / 2 (a soft label whose expectation
// ranks by the expected quality gained from escalating), field: the row's own label_field.
enum class label_kind { weak_wrong, strong_better, gain, field };
std::optional<label_kind> parse_label_kind(std::string_view name);  // nullopt: treat the name as a field
std::optional<double> row_label(const routing_row& row, label_kind kind);  // nullopt when the field is missing

// The request a data row stands for: one user message holding the prompt.
chat_request request_from_prompt(std::string_view prompt);

// Deterministic split by group: the row's domain when it has one (so whole MMLU subjects are held out together),
// else its id. True for roughly `fraction` of the groups, chosen by a hash of the group key and the seed.
std::string_view split_group(const routing_row& row);
bool in_holdout(std::string_view group_key, double fraction, uint64_t seed);

// Reads a whole file, gunzipping it when it starts with the gzip magic. Errors name the path.
result<std::string> read_file_maybe_gzip(const std::string& path);

}  // namespace sluice::router
