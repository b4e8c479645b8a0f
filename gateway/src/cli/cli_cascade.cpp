// `sluice train-cascade` and `sluice eval-cascade`: train the cascade's acceptance model on labelled local answers
// (JSONL rows, or a decision log joined with outcomes by request id) and judge one on rows by its accept-rate /
// precision curve. What must not go in here: Beast/Asio or serving code; features, training and the file format
// live in router/ (acceptance.h).
#include <boost/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "local/model_identity.h"
#include "sluice/router/acceptance.h"
#include "sluice/router/train.h"

namespace sluice::gateway {

namespace {

namespace rt = sluice::router;
namespace json = boost::json;

using cli::arg_parser;
using cli::fail;
using cli::for_each_line;
using cli::json_id;
using cli::json_number;
using cli::number_option;
using cli::parse_object;
using cli::pct;

// ---- rows ------------------------------------------------------------------------------------------------

struct labelled_rows {
  std::vector<rt::answer_signals> rows;
  std::vector<double> labels;  // (rows) 1 = the local answer was good enough
};

// The signal fields of a row or decision-log entry. `has_text` is false when query or answer is absent (the caller
// decides whether that is an error); malformed fields are errors.
bool parse_signals(const json::object& o, const std::string& where, rt::answer_signals& s, bool& has_text,
                   std::string& error) {
  const json::value* q = o.if_contains("query");
  const json::value* a = o.if_contains("answer");
  has_text = q != nullptr && q->is_string() && a != nullptr && a->is_string();
  if (has_text) {
    s.query = std::string(q->get_string());
    s.answer = std::string(a->get_string());
  }
  if (const json::value* f = o.if_contains("finish_reason"); f != nullptr && !f->is_null()) {
    const std::string_view name = f->is_string() ? std::string_view(f->get_string()) : std::string_view{};
    if (name == "stop") s.finish = rt::finish_reason::stop;
    else if (name == "length") s.finish = rt::finish_reason::length;
    else if (name == "tool_calls") s.finish = rt::finish_reason::tool_calls;
    else if (name == "content_filter") s.finish = rt::finish_reason::content_filter;
    else if (name == "error") s.finish = rt::finish_reason::error;
    else {
      error = where + "\"finish_reason\" must be one of stop, length, tool_calls, content_filter, error";
      return false;
    }
  }
  if (const json::value* t = o.if_contains("token_logprobs"); t != nullptr && !t->is_null()) {
    if (!t->is_array()) {
      error = where + "\"token_logprobs\" must be an array of numbers";
      return false;
    }
    s.token_logprobs.reserve(t->get_array().size());
    for (const json::value& x : t->get_array()) {
      double lp = std::nan("");  // null: a log-prob the writer could not represent (features floor it)
      if (!x.is_null() && (x.is_bool() || !json_number(x, lp))) {
        error = where + "\"token_logprobs\" must be an array of numbers";
        return false;
      }
      s.token_logprobs.push_back(lp);
    }
  }
  if (const json::value* t = o.if_contains("first_top_logprobs"); t != nullptr && !t->is_null()) {
    const char* shape = "\"first_top_logprobs\" must be an array of [token, logprob] pairs";
    if (!t->is_array()) {
      error = where + shape;
      return false;
    }
    for (const json::value& x : t->get_array()) {
      const json::value *tok = nullptr, *lp = nullptr;
      if (x.is_array() && x.get_array().size() == 2) {
        tok = &x.get_array()[0];
        lp = &x.get_array()[1];
      } else if (x.is_object()) {  // {"token": ..., "logprob": ...}, as OpenAI's top_logprobs entries
        tok = x.get_object().if_contains("token");
        lp = x.get_object().if_contains("logprob");
      }
      double v = std::nan("");
      if (tok == nullptr || lp == nullptr || !tok->is_string() ||
          (!lp->is_null() && (lp->is_bool() || !json_number(*lp, v)))) {
        error = where + shape;
        return false;
      }
      s.first_top_logprobs.emplace_back(std::string(tok->get_string()), v);
    }
  }
  if (const json::value* p = o.if_contains("pre_score"); p != nullptr && !p->is_null()) {
    double v = 0.0;
    if (p->is_bool() || !json_number(*p, v)) {
      error = where + "\"pre_score\" must be a number or null";
      return false;
    }
    s.pre_score = v;
  }
  return true;
}

// A correctness label: 0/1, true/false, or a number in [0, 1].
bool parse_label(const json::value* v, double& y) {
  return v != nullptr && json_number(*v, y) && y >= 0.0 && y <= 1.0;
}

// --data FILE: every row carries query, answer and its label `correct`.
bool load_rows(const std::string& path, labelled_rows& out, std::string& error) {
  const size_t before = out.rows.size();
  const bool ok = for_each_line(path, error, [&](size_t line_no, std::string_view line) {
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    json::object o;
    rt::answer_signals s;
    bool has_text = false;
    if (!parse_object(line, where, o, error) || !parse_signals(o, where, s, has_text, error)) return false;
    if (!has_text) {
      error = where + "missing string field \"query\" or \"answer\"";
      return false;
    }
    double y = 0.0;
    if (!parse_label(o.if_contains("correct"), y)) {
      error = where + "missing label \"correct\" (0/1, true/false, or a number in [0, 1])";
      return false;
    }
    out.rows.push_back(std::move(s));
    out.labels.push_back(y);
    return true;
  });
  if (ok && out.rows.size() == before) {
    error = path + ": no rows";
    return false;
  }
  return ok;
}

// --outcomes FILE: labels by request id. JSONL {"id", "correct"} or {"id", "score"} (>= 0.5 counts as correct),
// or CSV lines "id,correct" (a header line is skipped). Duplicate ids keep the first label.
bool load_outcomes(const std::string& path, std::map<std::string, double>& out, size_t& duplicates,
                   std::string& error) {
  return for_each_line(path, error, [&](size_t line_no, std::string_view line) {
    const std::string where = path + ":" + std::to_string(line_no) + ": ";
    std::string id;
    double y = 0.0;
    if (line.front() == '{') {
      json::object o;
      if (!parse_object(line, where, o, error)) return false;
      const std::optional<std::string> parsed_id = json_id(o);
      if (!parsed_id) {
        error = where + "missing \"id\" (a string or an integer)";
        return false;
      }
      id = *parsed_id;
      if (const json::value* c = o.if_contains("correct")) {
        if (!parse_label(c, y)) {
          error = where + "\"correct\" must be 0/1, true/false, or a number in [0, 1]";
          return false;
        }
      } else if (const json::value* sc = o.if_contains("score"); sc != nullptr && json_number(*sc, y) &&
                                                                  y >= 0.0 && y <= 1.0) {
        y = y >= 0.5 ? 1.0 : 0.0;
      } else {
        error = where + "needs \"correct\" (0/1) or \"score\" (a number in [0, 1])";
        return false;
      }
    } else {
      const size_t comma = line.rfind(',');
      auto trim = [](std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '"')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '"')) s.remove_suffix(1);
        return s;
      };
      const std::string_view value =
          comma == std::string_view::npos ? std::string_view{} : trim(line.substr(comma + 1));
      id = std::string(trim(line.substr(0, comma == std::string_view::npos ? line.size() : comma)));
      if (value == "true") y = 1.0;
      else if (value == "false") y = 0.0;
      else if (!cli::parse_number(std::string(value), y) || !(y >= 0.0 && y <= 1.0)) {
        if (line_no == 1 && id == "id") return true;  // the header
        error = where + "expected \"id,correct\" with correct 0 or 1";
        return false;
      }
    }
    if (!out.emplace(id, y).second) ++duplicates;
    return true;
  });
}

// --decision-log FILE(s) joined with --outcomes FILE(s) by request id. Log entries without query or answer (the
// route logged no text, or the local tier never ran) are skipped and counted, as are entries without an outcome.
bool load_decision_logs(const arg_parser& args, labelled_rows& out, std::string& error) {
  std::map<std::string, double> outcomes;
  size_t outcome_duplicates = 0;
  for (const std::string& path : args.all("outcomes"))
    if (!load_outcomes(path, outcomes, outcome_duplicates, error)) return false;
  std::map<std::string, bool> joined;  // outcome ids seen in a log
  size_t entries = 0, no_text = 0, no_id = 0, no_outcome = 0, log_duplicates = 0;
  for (const std::string& path : args.all("decision-log")) {
    const bool ok = for_each_line(path, error, [&](size_t line_no, std::string_view line) {
      const std::string where = path + ":" + std::to_string(line_no) + ": ";
      json::object o;
      rt::answer_signals s;
      bool has_text = false;
      if (!parse_object(line, where, o, error)) return false;
      if (const json::value* t = o.if_contains("type"); t && t->is_string() && t->get_string() == "feedback") {
        return true;  // feedback lines carry outcomes for `sluice distill`, not signals
      }
      // A route that does not log text writes its signals without token texts: nothing to train on, skip it
      // before reading the signals strictly.
      const json::value* q = o.if_contains("query");
      const json::value* a = o.if_contains("answer");
      if (!(q && q->is_string() && a && a->is_string())) {
        ++entries;
        ++no_text;
        return true;
      }
      if (!parse_signals(o, where, s, has_text, error)) return false;
      ++entries;
      const std::optional<std::string> id = json_id(o);
      if (!id) {
        ++no_id;
        return true;
      }
      if (!has_text) {
        ++no_text;
        return true;
      }
      const auto outcome = outcomes.find(*id);
      if (outcome == outcomes.end()) {
        ++no_outcome;
        return true;
      }
      if (!joined.emplace(*id, true).second) {
        ++log_duplicates;
        return true;
      }
      out.rows.push_back(std::move(s));
      out.labels.push_back(outcome->second);
      return true;
    });
    if (!ok) return false;
  }
  const size_t unknown = outcomes.size() - joined.size();
  std::fprintf(stderr,
               "decision log: %zu entries, %zu joined with an outcome; skipped %zu without query/answer text, %zu "
               "without an id, %zu without an outcome, %zu repeated ids\n",
               entries, joined.size(), no_text, no_id, no_outcome, log_duplicates);
  if (unknown > 0 || outcome_duplicates > 0)
    std::fprintf(stderr, "outcomes: %zu labels; %zu with ids not in the decision log, %zu duplicate ids (first kept)\n",
                 outcomes.size(), unknown, outcome_duplicates);
  return true;
}

// Every --data file, then the decision logs. Reports what was read on stderr.
bool load_inputs(const arg_parser& args, labelled_rows& out, std::string& error) {
  if (!args.has("data") && !args.has("decision-log")) {
    error = "--data or --decision-log (with --outcomes) is required";
    return false;
  }
  if (args.has("decision-log") != args.has("outcomes")) {
    error = "--decision-log and --outcomes go together: the log has the answers, the outcomes their labels";
    return false;
  }
  for (const std::string& path : args.all("data")) {
    const size_t before = out.rows.size();
    if (!load_rows(path, out, error)) return false;
    double correct = 0.0;
    for (size_t i = before; i < out.rows.size(); ++i) correct += out.labels[i];
    std::fprintf(stderr, "%s: %zu rows, %.1f%% correct\n", path.c_str(), out.rows.size() - before,
                 100.0 * correct / static_cast<double>(out.rows.size() - before));
  }
  if (args.has("decision-log") && !load_decision_logs(args, out, error)) return false;
  if (out.rows.empty()) {
    error = "no labelled rows";
    return false;
  }
  return true;
}

// Rows whose signals do not match what serving will supply: said once, on stderr.
void warn_about_signals(const labelled_rows& d, const rt::acceptance_config& config) {
  size_t few_alternatives = 0, no_logprobs = 0, not_a_label = 0;
  for (const rt::answer_signals& s : d.rows) {
    few_alternatives += s.first_top_logprobs.size() < config.top_logprobs;
    no_logprobs += s.token_logprobs.empty();
    not_a_label += !config.labels.empty() && !rt::label_index(config, s.answer);
  }
  if (few_alternatives > 0)
    std::fprintf(stderr, "warning: %zu rows list fewer than %u first-token alternatives (serving asks for %u)\n",
                 few_alternatives, config.top_logprobs, config.top_logprobs);
  if (no_logprobs > 0) std::fprintf(stderr, "warning: %zu rows have no token_logprobs\n", no_logprobs);
  if (not_a_label > 0) std::fprintf(stderr, "note: %zu answers are none of the labels\n", not_a_label);
}

// ---- reporting -------------------------------------------------------------------------------------------

void print_curve(const std::vector<rt::acceptance_point>& curve, size_t rows) {
  std::printf("  %9s %9s %12s %11s %10s\n", "threshold", "accepted", "accept_rate", "escalation", "precision");
  for (const rt::acceptance_point& p : curve)
    std::printf("  %9.4f %9zu %12s %11s %10s\n", p.threshold,
                static_cast<size_t>(std::llround(p.accept_rate * static_cast<double>(rows))),
                pct(p.accept_rate).c_str(), pct(1.0 - p.accept_rate).c_str(), pct(p.precision).c_str());
}

// Accept rate and precision at one threshold.
rt::acceptance_point at_threshold(const std::vector<double>& scores, const std::vector<double>& labels, double t) {
  size_t accepted = 0;
  double positives = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (scores[i] >= t) {
      ++accepted;
      positives += labels[i];
    }
  }
  return {t, static_cast<double>(accepted) / static_cast<double>(scores.size()),
          accepted ? positives / static_cast<double>(accepted) : std::nan("")};
}

bool parse_labels(const std::string& text, std::vector<std::string>& labels, std::string& error) {
  for (size_t pos = 0; pos <= text.size();) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    const std::string label = rt::normalise_answer(std::string_view(text).substr(pos, comma - pos));
    if (label.empty()) {
      error = "--labels: empty label in '" + text + "' (give them as up,down,neutral)";
      return false;
    }
    labels.push_back(label);
    pos = comma + 1;
  }
  return true;
}

}  // namespace

int run_train_cascade(int argc, char** argv) {
  const std::string cmd = "train-cascade";
  arg_parser args{argc, argv, {}, {}};
  if (!args.parse({"data", "decision-log", "outcomes", "labels", "min-precision", "max-escalation-rate",
                   "calibration-fraction", "seed", "epochs", "lr", "l2", "hash-bits", "word-ngrams", "top-logprobs",
                   "local-model", "local-model-id", "out"}))
    return parse_failed(args, cmd, "usage: sluice train-cascade --data FILE.jsonl [--data ...] [--decision-log FILE --outcomes "
                         "FILE] [--labels up,down,...] [--min-precision P | --max-escalation-rate R] "
                         "[--calibration-fraction F] [--seed N] [--epochs N] [--lr X] [--l2 X] [--hash-bits N] "
                         "[--word-ngrams N] [--top-logprobs K] [--local-model GGUF | --local-model-id ID] --out FILE");
  if (!args.has("out")) return fail(cmd, "--out is required");
  rt::acceptance_train_options opt;
  std::string error;
  if (!number_option(args, "calibration-fraction", opt.calibration_fraction, error) ||
      !number_option(args, "seed", opt.seed, error) || !number_option(args, "epochs", opt.epochs, error) ||
      !number_option(args, "lr", opt.learning_rate, error) || !number_option(args, "l2", opt.l2, error) ||
      !number_option(args, "hash-bits", opt.config.hash_bits, error) ||
      !number_option(args, "word-ngrams", opt.config.word_ngram_max, error) ||
      !number_option(args, "top-logprobs", opt.config.top_logprobs, error))
    return fail(cmd, error);
  if (args.has("min-precision") && args.has("max-escalation-rate"))
    return fail(cmd, "give --min-precision or --max-escalation-rate, not both");
  double target = 0.0;
  if (args.has("min-precision")) {
    if (!number_option(args, "min-precision", target, error)) return fail(cmd, error);
    opt.min_precision = target;
  }
  if (args.has("max-escalation-rate")) {
    if (!number_option(args, "max-escalation-rate", target, error)) return fail(cmd, error);
    opt.max_escalation_rate = target;
  }
  if (args.has("labels") && !parse_labels(args.get("labels"), opt.config.labels, error)) return fail(cmd, error);
  if (std::string why = rt::validate(opt.config); !why.empty()) return fail(cmd, why);
  if (args.has("local-model") && args.has("local-model-id"))
    return fail(cmd, "give --local-model or --local-model-id, not both");

  labelled_rows data;
  if (!load_inputs(args, data, error)) return fail(cmd, error);
  warn_about_signals(data, opt.config);
  if (args.has("local-model")) {
    rt::result<std::string> id = gguf_identity(args.get("local-model"));
    if (!id) return fail(cmd, id.error().message);
    opt.local_model_id = *id;
  } else {
    opt.local_model_id = args.get("local-model-id");
  }

  // The training command, minus the output path, so the same training gives the same bytes wherever it is saved.
  opt.notes = "sluice train-cascade";
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out") ++i;
    else if (a.rfind("--out=", 0) != 0) opt.notes += " " + a;
  }
  std::fprintf(stderr, "training on %zu rows (%.0f%% held out for calibration)\n", data.rows.size(),
               100.0 * opt.calibration_fraction);
  rt::result<rt::acceptance_model> model = rt::train_acceptance(data.rows, data.labels, opt);
  if (!model)
    return fail(cmd, model.error().message,
                model.error().code == rt::errc::bad_request ? cli::exit_bad_input : cli::exit_failed);
  rt::result<rt::acceptance_scorer> scorer = rt::acceptance_scorer::from_model(std::move(*model));
  if (!scorer) return fail(cmd, scorer.error().message, cli::exit_failed);
  if (rt::result<void> saved = scorer->save(args.get("out")); !saved)
    return fail(cmd, saved.error().message, cli::exit_failed);

  const rt::acceptance_model& m = scorer->model();
  const size_t n_cal = rt::acceptance_calibration_rows(data.rows.size(), opt.calibration_fraction);
  const size_t judged = n_cal > 0 ? n_cal : data.rows.size();
  std::printf("calibration curve (%zu %s rows):\n", judged, n_cal > 0 ? "calibration" : "fitting (no calibration)");
  print_curve(m.curve, judged);
  std::printf("threshold %.6f (%s)", m.threshold, m.threshold_rule.c_str());
  for (const rt::acceptance_point& p : m.curve)
    if (p.threshold == m.threshold)
      std::printf(": accepts %s of those rows at precision %s", pct(p.accept_rate).c_str(), pct(p.precision).c_str());
  std::printf("\n");
  std::printf("local model: %s\n", m.local_model_id.empty() ? "not pinned" : m.local_model_id.c_str());
  std::printf("wrote %s (%zu features, %zu labels)\n", args.get("out").c_str(), rt::acceptance_feature_count(m.config),
              m.config.labels.size());
  return 0;
}

int run_eval_cascade(int argc, char** argv) {
  const std::string cmd = "eval-cascade";
  arg_parser args{argc, argv, {}, {}};
  if (!args.parse({"model", "data", "decision-log", "outcomes", "points"}))
    return parse_failed(args, cmd, "usage: sluice eval-cascade --model FILE --data FILE.jsonl [--data ...] "
                                  "[--decision-log FILE --outcomes FILE] [--points N]");
  if (!args.has("model")) return fail(cmd, "--model is required");
  int points = 21;
  std::string error;
  if (!number_option(args, "points", points, error)) return fail(cmd, error);
  if (points < 2 || points > 1000) return fail(cmd, "--points must be in 2..1000");
  rt::result<rt::acceptance_scorer> scorer = rt::acceptance_scorer::load(args.get("model"));
  if (!scorer) return fail(cmd, scorer.error().message);
  labelled_rows data;
  if (!load_inputs(args, data, error)) return fail(cmd, error);
  const rt::acceptance_model& m = scorer->model();
  warn_about_signals(data, m.config);

  std::vector<double> scores;
  scores.reserve(data.rows.size());
  for (const rt::answer_signals& s : data.rows) scores.push_back(scorer->score(s));
  double correct = 0.0;
  for (double y : data.labels) correct += y;
  std::printf("%zu rows, local answers correct %s (the precision of accepting everything)\n", data.rows.size(),
              pct(correct / static_cast<double>(data.rows.size())).c_str());
  print_curve(rt::acceptance_curve_of_scores(scores, data.labels, points), data.rows.size());
  const rt::acceptance_point p = at_threshold(scores, data.labels, m.threshold);
  std::printf("at the model's threshold %.6f (%s): accept rate %s, precision %s\n", m.threshold,
              m.threshold_rule.c_str(), pct(p.accept_rate).c_str(), pct(p.precision).c_str());
  std::printf("local model: %s\n", m.local_model_id.empty() ? "not pinned" : m.local_model_id.c_str());
  return 0;
}

}  // namespace sluice::gateway
