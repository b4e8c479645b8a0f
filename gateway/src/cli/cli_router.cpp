// `sluice train-router` and `sluice eval-router`: train the router classifier on routing-benchmark JSONL
// (optionally gzipped) and judge it with RouteLLM's metrics beside random and prompt-length baselines.
// What must not go in here: Beast/Asio or any serving code; the learning and metrics live in router/.
#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "sluice/router/classifier.h"
#include "sluice/router/routing_metrics.h"
#include "sluice/router/train.h"

namespace sluice::gateway {

namespace {

namespace rt = sluice::router;

using cli::arg_parser;
using cli::fail;
using cli::json_number;
using cli::number_option;
using cli::parse_number;
using cli::pct;

// ---- data ------------------------------------------------------------------------------------------------

struct dataset {
  std::string path;
  std::vector<rt::routing_row> rows;  // contaminated rows already dropped
  size_t dropped_contaminated = 0;
};

// Reads one JSONL(.gz) file. label_field: a custom field to read into routing_row::label_field ("" = none).
bool load_dataset(const std::string& path, const std::string& label_field, dataset& out, std::string& error) {
  rt::result<std::string> text = rt::read_file_maybe_gzip(path);
  if (!text) {
    error = text.error().message;
    return false;
  }
  out.path = path;
  std::string_view rest = *text;
  size_t line_no = 0;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    boost::system::error_code ec;
    boost::json::value v = boost::json::parse(line, ec);
    if (ec || !v.is_object()) {
      error = where + "not a JSON object" + (ec ? " (" + ec.message() + ")" : "");
      return false;
    }
    const boost::json::object& o = v.get_object();
    rt::routing_row row;
    auto str = [&](const char* key, std::string& dst, bool required) {
      const boost::json::value* f = o.if_contains(key);
      if (f == nullptr || !f->is_string()) {
        if (required) error = where + "missing string field \"" + key + "\"";
        return !required;
      }
      dst = std::string(f->get_string());
      return true;
    };
    auto num = [&](const char* key, double& dst, bool required) {
      const boost::json::value* f = o.if_contains(key);
      if (f == nullptr || !json_number(*f, dst)) {
        if (required) error = where + "missing numeric field \"" + key + "\"";
        return !required;
      }
      return true;
    };
    double contaminated = 0.0;
    if (!str("prompt", row.prompt, true) || !str("id", row.id, false) || !str("domain", row.domain, false) ||
        !num("weak_correct", row.weak_correct, true) || !num("strong_correct", row.strong_correct, true) ||
        !num("contaminated", contaminated, false))
      return false;
    if (row.id.empty()) row.id = std::to_string(line_no);
    if (!label_field.empty()) {
      double y = 0.0;
      if (const boost::json::value* f = o.if_contains(label_field); f != nullptr && json_number(*f, y))
        row.label_field = y;
    }
    if (contaminated != 0.0) {
      ++out.dropped_contaminated;  // RouteLLM drops these before any metric; so do we, always
      continue;
    }
    out.rows.push_back(std::move(row));
  }
  if (out.rows.empty()) {
    error = path + ": no usable rows";
    return false;
  }
  return true;
}

// The train/held-out split shared by both commands, so a model can be judged on groups it never saw.
struct split_options {
  std::string which = "all";  // all | train | heldout
  double fraction = 0.25;
  uint64_t seed = 0;
};

bool parse_split(const arg_parser& args, split_options& s, std::string& error) {
  s.which = args.get("split", "all");
  if (s.which != "all" && s.which != "train" && s.which != "heldout") {
    error = "--split must be all, train or heldout";
    return false;
  }
  if (!number_option(args, "holdout-fraction", s.fraction, error) || !number_option(args, "split-seed", s.seed, error))
    return false;
  if (!(s.fraction >= 0.0 && s.fraction <= 1.0)) {
    error = "--holdout-fraction must be in [0, 1]";
    return false;
  }
  return true;
}

void apply_split(dataset& d, const split_options& s) {
  if (s.which == "all") return;
  const bool keep_heldout = s.which == "heldout";
  std::erase_if(d.rows, [&](const rt::routing_row& r) {
    return rt::in_holdout(rt::split_group(r), s.fraction, s.seed) != keep_heldout;
  });
}

size_t count_groups(const std::vector<rt::routing_row>& rows) {
  std::set<std::string_view> g;
  for (const auto& r : rows) g.insert(rt::split_group(r));
  return g.size();
}

std::string group_list(const std::vector<rt::routing_row>& rows, size_t max_shown) {
  std::set<std::string_view> g;
  for (const auto& r : rows)
    if (!r.domain.empty()) g.insert(r.domain);
  std::string out;
  size_t shown = 0;
  for (std::string_view s : g) {
    if (shown++ == max_shown) {
      out += ", ...";
      break;
    }
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

// ---- reporting -------------------------------------------------------------------------------------------

struct scored_rows {
  std::vector<double> weak, strong;
};

scored_rows outcomes(const std::vector<rt::routing_row>& rows) {
  scored_rows s;
  for (const auto& r : rows) {
    s.weak.push_back(r.weak_correct);
    s.strong.push_back(r.strong_correct);
  }
  return s;
}

void print_metrics_row(const char* name, const rt::routing_metrics& m) {
  std::printf("  %-24s %7.3f %10s %10s\n", name, m.apgr, pct(m.cpt50).c_str(), pct(m.cpt80).c_str());
}

// Scores every row with the classifier, prints the router beside the baselines. Returns false on a metric error.
bool report_dataset(const rt::classifier* model, const std::string& title, const std::vector<rt::routing_row>& rows,
                    std::string& error) {
  const scored_rows o = outcomes(rows);
  std::vector<double> length_scores;
  for (const auto& r : rows) length_scores.push_back(static_cast<double>(r.prompt.size()));
  rt::result<rt::routing_metrics> length = rt::evaluate_routing(length_scores, o.weak, o.strong);
  if (!length) {
    error = length.error().message;
    return false;
  }
  std::printf("%s: %zu rows, %zu groups; weak quality %.3f, strong quality %.3f\n", title.c_str(), rows.size(),
              count_groups(rows), length->weak_quality, length->strong_quality);
  std::printf("  %-24s %7s %10s %10s\n", "router", "APGR", "CPT(50%)", "CPT(80%)");
  if (model != nullptr) {
    std::vector<double> scores;
    scores.reserve(rows.size());
    for (const auto& r : rows) scores.push_back(model->score(rt::request_from_prompt(r.prompt)));
    rt::result<rt::routing_metrics> m = rt::evaluate_routing(scores, o.weak, o.strong);
    if (!m) {
      error = m.error().message;
      return false;
    }
    print_metrics_row("classifier", *m);
  }
  print_metrics_row("prompt length", *length);
  // Random routing: the mean over 10 fixed seeds, so the baseline itself is not a lucky draw.
  rt::routing_metrics mean_random;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    std::mt19937_64 rng(seed);
    std::vector<double> scores;
    for (size_t i = 0; i < rows.size(); ++i) scores.push_back(static_cast<double>(rng() >> 11));
    rt::result<rt::routing_metrics> m = rt::evaluate_routing(scores, o.weak, o.strong);
    if (!m) {
      error = m.error().message;
      return false;
    }
    mean_random.apgr += m->apgr / 10;
    mean_random.cpt50 += m->cpt50 / 10;
    mean_random.cpt80 += m->cpt80 / 10;
  }
  print_metrics_row("random (mean of 10)", mean_random);
  return true;
}

// ---- progress bar ----------------------------------------------------------------------------------------

// Redraws only when the bar grows or an epoch ends, so a log file gets a few dozen updates, not thousands.
void draw_progress(const rt::train_progress& p) {
  static int last_filled = -1, last_epoch = 0;
  const size_t total = p.rows_total * static_cast<size_t>(p.epochs);
  const size_t done = p.rows_done + p.rows_total * static_cast<size_t>(p.epoch - 1);
  const int width = 30;
  const int filled = total ? static_cast<int>(width * done / total) : width;
  const bool epoch_end = p.rows_done == p.rows_total;
  if (filled == last_filled && !epoch_end && p.epoch == last_epoch) return;
  last_filled = filled;
  last_epoch = p.epoch;
  char bar[width + 1];
  std::memset(bar, '.', width);
  std::memset(bar, '#', static_cast<size_t>(filled));
  bar[width] = 0;
  std::fprintf(stderr, "\r[%s] epoch %d/%d  loss %.4f", bar, p.epoch, p.epochs, p.mean_loss);
  if (done == total) {
    std::fprintf(stderr, "\n");
    last_filled = -1;
    last_epoch = 0;
  }
  std::fflush(stderr);
}

bool parse_char_ngrams(const std::string& text, rt::feature_config& f) {
  if (text == "0" || text == "none") {
    f.char_ngram_min = f.char_ngram_max = 0;
    return true;
  }
  size_t dash = text.find('-');
  std::string lo = text.substr(0, dash), hi = dash == std::string::npos ? lo : text.substr(dash + 1);
  return parse_number(lo, f.char_ngram_min) && parse_number(hi, f.char_ngram_max);
}

}  // namespace

int run_train_router(int argc, char** argv) {
  const std::string cmd = "train-router";
  arg_parser args{argc, argv, {}, {}};
  if (!args.parse({"data", "out", "label", "seed", "epochs", "l2", "lr", "val-fraction", "split", "holdout-fraction",
                   "split-seed", "hash-bits", "word-ngrams", "char-ngrams", "hidden"}))
    return parse_failed(args, cmd, "usage: sluice train-router --data FILE.jsonl[.gz] [--data ...] --out MODEL "
                                  "[--label gain|weak_wrong|strong_better|FIELD] [--seed N] [--epochs N] [--l2 X] "
                                  "[--lr X] [--val-fraction F] [--split all|train|heldout] [--holdout-fraction F] "
                                  "[--split-seed N] [--hash-bits N] [--word-ngrams N] [--char-ngrams MIN-MAX|0] "
                                  "[--hidden N]");
  if (!args.has("data") || !args.has("out")) return fail(cmd, "--data and --out are required");

  rt::train_options opt;
  std::string error;
  double val_fraction = 0.2;
  if (!number_option(args, "seed", opt.seed, error) || !number_option(args, "epochs", opt.epochs, error) ||
      !number_option(args, "l2", opt.l2, error) || !number_option(args, "lr", opt.learning_rate, error) ||
      !number_option(args, "val-fraction", val_fraction, error) ||
      !number_option(args, "hash-bits", opt.features.hash_bits, error) ||
      !number_option(args, "word-ngrams", opt.features.word_ngram_max, error) ||
      !number_option(args, "hidden", opt.hidden_units, error))
    return fail(cmd, error);
  if (args.has("char-ngrams") && !parse_char_ngrams(args.get("char-ngrams"), opt.features))
    return fail(cmd, "--char-ngrams must be MIN-MAX, N or 0");
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) return fail(cmd, "--val-fraction must be in [0, 1)");
  split_options split;
  if (!parse_split(args, split, error)) return fail(cmd, error);

  const std::string label_name = args.get("label", "gain");
  const std::optional<rt::label_kind> parsed_kind = rt::parse_label_kind(label_name);
  const rt::label_kind kind = parsed_kind.value_or(rt::label_kind::field);

  std::vector<dataset> sets;
  for (const std::string& path : args.all("data")) {
    dataset d;
    if (!load_dataset(path, kind == rt::label_kind::field ? label_name : "", d, error)) return fail(cmd, error);
    const size_t before = d.rows.size();
    apply_split(d, split);
    std::fprintf(stderr, "%s: %zu rows (%zu contaminated dropped), %zu in split '%s'\n", path.c_str(), before,
                 d.dropped_contaminated, d.rows.size(), split.which.c_str());
    if (d.rows.empty()) return fail(cmd, path + ": no rows left in split '" + split.which + "'");
    sets.push_back(std::move(d));
  }

  // Validation split: whole groups (MMLU subjects, else single rows), chosen by the seed.
  std::vector<rt::chat_request> train_requests;
  std::vector<double> train_labels;
  std::vector<std::vector<rt::routing_row>> val_rows(sets.size());
  for (size_t s = 0; s < sets.size(); ++s) {
    for (const rt::routing_row& r : sets[s].rows) {
      const std::optional<double> y = rt::row_label(r, kind);
      if (!y) return fail(cmd, sets[s].path + ": row '" + r.id + "' has no numeric field '" + label_name + "'");
      if (!(*y >= 0.0 && *y <= 1.0))
        return fail(cmd, sets[s].path + ": row '" + r.id + "' label " + std::to_string(*y) + " is outside [0, 1]");
      if (val_fraction > 0.0 && rt::in_holdout(rt::split_group(r), val_fraction, opt.seed ^ 0x7661ULL)) {
        val_rows[s].push_back(r);
      } else {
        train_requests.push_back(rt::request_from_prompt(r.prompt));
        train_labels.push_back(*y);
      }
    }
  }
  if (train_requests.empty()) return fail(cmd, "every row fell into the validation split: lower --val-fraction");

  // The training command, minus the output path, so the same training gives the same bytes wherever it is saved.
  std::string notes = "sluice train-router";
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out") ++i;
    else if (a.rfind("--out=", 0) != 0) notes += " " + a;
  }
  opt.notes = notes;
  opt.progress = draw_progress;
  std::fprintf(stderr, "training on %zu rows (label %s)\n", train_requests.size(), label_name.c_str());
  rt::result<rt::router_model> model = rt::train_router(train_requests, train_labels, opt);
  if (!model) return fail(cmd, model.error().message);
  rt::result<rt::classifier> clf = rt::classifier::from_model(std::move(*model));
  if (!clf) return fail(cmd, clf.error().message);
  if (rt::result<void> saved = clf->save(args.get("out")); !saved) return fail(cmd, saved.error().message);

  for (size_t s = 0; s < sets.size(); ++s) {
    if (val_rows[s].empty()) continue;
    const std::string title = "validation " + sets[s].path;
    if (!report_dataset(&*clf, title, val_rows[s], error)) return fail(cmd, error);
    if (std::string groups = group_list(val_rows[s], 12); !groups.empty())
      std::printf("  validation subjects: %s\n", groups.c_str());
  }
  std::printf("wrote %s (%zu features, %u hidden units)\n", args.get("out").c_str(),
              rt::feature_count(clf->model().features), clf->model().hidden_units);
  return 0;
}

int run_eval_router(int argc, char** argv) {
  const std::string cmd = "eval-router";
  arg_parser args{argc, argv, {}, {}};
  if (!args.parse({"model", "data", "split", "holdout-fraction", "split-seed"}))
    return parse_failed(args, cmd, "usage: sluice eval-router --model MODEL --data FILE.jsonl[.gz] [--data ...] "
                                  "[--split all|train|heldout] [--holdout-fraction F] [--split-seed N]");
  if (!args.has("model") || !args.has("data")) return fail(cmd, "--model and --data are required");
  std::string error;
  split_options split;
  if (!parse_split(args, split, error)) return fail(cmd, error);
  rt::result<rt::classifier> clf = rt::classifier::load(args.get("model"));
  if (!clf) return fail(cmd, clf.error().message);

  for (const std::string& path : args.all("data")) {
    dataset d;
    if (!load_dataset(path, "", d, error)) return fail(cmd, error);
    apply_split(d, split);
    if (d.rows.empty()) return fail(cmd, path + ": no rows left in split '" + split.which + "'");
    if (!report_dataset(&*clf, path + " [split " + split.which + "]", d.rows, error)) return fail(cmd, error);
    if (std::string groups = group_list(d.rows, 40); !groups.empty()) std::printf("  subjects: %s\n", groups.c_str());
  }
  return 0;
}

}  // namespace sluice::gateway
