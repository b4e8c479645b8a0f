// `sluice distill`: the flywheel. Reads a route's decision log (request lines and feedback lines, JSON lines),
// takes the answers the route served as references (the last tier's, and local accepts unless told not to;
// feedback joined by request id overrides both), and trains the task tier's model on them (router/ task_model.h).
// What must not go in here: Beast/Asio or serving code; features, training and the file format live in router/.
#include <boost/json.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cli/cli.h"
#include "cli/cli_common.h"
#include "sluice/router/acceptance.h"
#include "sluice/router/task_model.h"

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

const char* const usage =
    "usage: sluice distill --log FILE [--log ...] --route NAME --out FILE [--min-precision P] [--heldout-fraction F]\n"
    "                      [--min-rows N] [--include-local yes|no] [--seed N] [--epochs N] [--hash-bits N]\n"
    "                      [--word-ngrams N] [--char-ngrams N]\n"
    "Trains a task tier's model on the answers a route served (from its decision log, with log_text: true),\n"
    "corrected by feedback lines joined by request id.";

// How a logged request of the route was served, as far as its reference answer is concerned.
enum class served_by {
  failed,          // nothing was served
  no_text,         // served, but the route logs no query/response text
  last_tier,       // escalated to the tier that served it, the last one tried
  local,           // accepted from an earlier tier (the acceptance model passed it)
  after_failure,   // the last tier failed and an earlier, rejected answer was served
  task_tier,       // a task tier served it: its own answer, never a reference (the model would learn itself)
  unknown,         // a decision this build does not know
};

struct request_entry {
  bool in_route = false;  // the line's route is --route (text is kept only then)
  served_by how = served_by::unknown;
  std::string tier;
  std::string query, response;
};

struct feedback_entry {
  std::optional<double> score;
  std::optional<std::string> answer;
};

struct log_data {
  std::vector<request_entry> requests;                  // in order of first appearance
  std::unordered_map<std::string, size_t> request_index;  // id -> requests index
  std::map<std::string, feedback_entry> feedback;       // id -> the last feedback line
  std::set<std::string> routes;                         // every route seen, for the error when --route is absent
  size_t lines = 0, malformed = 0, unknown_type = 0, request_lines = 0, duplicate_requests = 0;
  size_t feedback_lines = 0, feedback_bad = 0, feedback_duplicates = 0;
  std::string first_malformed;  // "FILE:LINE: why"
};

std::optional<std::string> get_string(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return std::string(v->get_string());
}

served_by classify_decision(const json::object& o, std::string& tier) {
  const std::optional<std::string> decision = get_string(o, "decision");
  tier = get_string(o, "tier").value_or("");
  if (!decision || *decision == "failed" || tier.empty()) return served_by::failed;
  if (*decision == "served_after_failure") return served_by::after_failure;
  if (*decision != "accepted" && *decision != "escalated") return served_by::unknown;
  // Who served is told by the served attempt's kind: a task tier (never a reference: it would learn itself), a
  // local tier (an accepted local answer, even after an escalation from a task tier), or a remote tier (the
  // route's frontier). Lines without kinds (older logs) fall back on the decision.
  const json::value* attempts = o.if_contains("attempts");
  if (attempts != nullptr && attempts->is_array()) {
    for (const json::value& a : attempts->get_array()) {
      if (!a.is_object()) continue;
      const json::object& ao = a.get_object();
      const json::value* t = ao.if_contains("tier");
      const json::value* outcome = ao.if_contains("outcome");
      const json::value* k = ao.if_contains("kind");
      if (!t || !t->is_string() || t->get_string() != tier) continue;
      if (outcome && outcome->is_string() && outcome->get_string() != "served") continue;
      if (!k || !k->is_string()) break;
      if (k->get_string() == "task") return served_by::task_tier;
      if (k->get_string() == "local") return served_by::local;
      return served_by::last_tier;
    }
  }
  return *decision == "accepted" ? served_by::local : served_by::last_tier;
}

// A feedback line: {"type": "feedback", "id", "score" (optional, 0..1), "answer" (optional), "label" (free text,
// ignored)}. A line without an id, with a score outside [0, 1] or a non-string answer is counted as bad.
void read_feedback(const json::object& o, log_data& d) {
  ++d.feedback_lines;
  const std::optional<std::string> id = json_id(o);
  feedback_entry f;
  bool ok = id.has_value();
  if (const json::value* s = o.if_contains("score"); s != nullptr && !s->is_null()) {
    double v = 0.0;
    ok = ok && !s->is_bool() && json_number(*s, v) && v >= 0.0 && v <= 1.0;
    f.score = v;
  }
  if (const json::value* a = o.if_contains("answer"); a != nullptr && !a->is_null()) {
    ok = ok && a->is_string();
    if (a->is_string()) f.answer = std::string(a->get_string());
  }
  if (!ok) {
    ++d.feedback_bad;
    return;
  }
  auto [it, inserted] = d.feedback.insert_or_assign(*id, std::move(f));
  if (!inserted) ++d.feedback_duplicates;
}

void read_request(const json::object& o, const std::string& route, log_data& d) {
  ++d.request_lines;
  request_entry e;
  const std::optional<std::string> line_route = get_string(o, "route");
  if (line_route) d.routes.insert(*line_route);
  e.in_route = line_route == route;
  if (e.in_route) {
    e.how = classify_decision(o, e.tier);
    std::optional<std::string> query = get_string(o, "query"), response = get_string(o, "response");
    if (e.how != served_by::failed && (!query || !response)) e.how = served_by::no_text;
    if (query) e.query = std::move(*query);
    if (response) e.response = std::move(*response);
  }
  const std::optional<std::string> id = json_id(o);
  if (!id) {  // cannot be joined with feedback or repeated: a row of its own
    d.requests.push_back(std::move(e));
    return;
  }
  auto [it, inserted] = d.request_index.try_emplace(*id, d.requests.size());
  if (inserted) {
    d.requests.push_back(std::move(e));
  } else {
    ++d.duplicate_requests;
    d.requests[it->second] = std::move(e);  // the last line wins, in the first line's place
  }
}

bool read_logs(const std::vector<std::string>& paths, const std::string& route, log_data& d, std::string& error) {
  for (const std::string& path : paths) {
    const bool ok = for_each_line(path, error, [&](size_t line_no, std::string_view line) {
      ++d.lines;
      const std::string where = path + ":" + std::to_string(line_no) + ": ";
      json::object o;
      std::string why;
      if (!parse_object(line, where, o, why)) {  // a torn last line of a crashed writer: skip, count, say where
        if (d.malformed++ == 0) d.first_malformed = why;
        return true;
      }
      const json::value* type = o.if_contains("type");
      if (type == nullptr || type->is_null()) read_request(o, route, d);
      else if (type->is_string() && type->get_string() == "feedback") read_feedback(o, d);
      else ++d.unknown_type;
      return true;
    });
    if (!ok) return false;
  }
  return true;
}

// The training rows of the route and what was skipped, by reason.
struct distill_rows {
  std::vector<std::string> queries, answers;
  size_t last_tier = 0, local = 0, feedback_answer = 0, feedback_confirmed = 0;  // rows used, by source
  size_t route_lines = 0, failed = 0, no_text = 0, after_failure = 0, unknown = 0, local_excluded = 0, task_tier = 0;
  size_t feedback_wrong = 0, feedback_unknown_ids = 0;
};

distill_rows select_rows(log_data& d, bool include_local) {
  distill_rows out;
  // A one-tier route's answers are "accepted" from the tier that other requests escalate to: its last tier.
  std::set<std::string> last_tiers;
  for (const request_entry& e : d.requests)
    if (e.in_route && e.how == served_by::last_tier) last_tiers.insert(e.tier);
  std::vector<const feedback_entry*> feedback_of(d.requests.size(), nullptr);
  for (const auto& [id, f] : d.feedback) {
    const auto it = d.request_index.find(id);
    if (it == d.request_index.end()) ++out.feedback_unknown_ids;
    else feedback_of[it->second] = &f;
  }
  for (size_t i = 0; i < d.requests.size(); ++i) {
    request_entry& e = d.requests[i];
    if (!e.in_route) continue;
    ++out.route_lines;
    if (e.how == served_by::failed) {
      ++out.failed;
      continue;
    }
    if (e.how == served_by::no_text) {
      ++out.no_text;
      continue;
    }
    if (e.how == served_by::local && last_tiers.contains(e.tier)) e.how = served_by::last_tier;
    // Feedback judges the served answer whichever tier gave it: a corrected answer replaces it, a low score drops
    // the row, a high score keeps it.
    const feedback_entry* f = feedback_of[i];
    if (f != nullptr && (f->answer || f->score)) {
      if (f->answer) {
        out.queries.push_back(std::move(e.query));
        out.answers.push_back(*f->answer);
        ++out.feedback_answer;
      } else if (*f->score < 0.5) {
        ++out.feedback_wrong;
      } else {
        out.queries.push_back(std::move(e.query));
        out.answers.push_back(std::move(e.response));
        ++out.feedback_confirmed;
      }
      continue;
    }
    switch (e.how) {
      case served_by::last_tier: ++out.last_tier; break;
      case served_by::local:
        if (!include_local) {
          ++out.local_excluded;
          continue;
        }
        ++out.local;
        break;
      case served_by::after_failure: ++out.after_failure; continue;
      case served_by::task_tier: ++out.task_tier; continue;
      default: ++out.unknown; continue;
    }
    out.queries.push_back(std::move(e.query));
    out.answers.push_back(std::move(e.response));
  }
  return out;
}

void print_report(const log_data& d, const distill_rows& r, const std::string& route) {
  std::printf("read %zu lines: %zu request lines, %zu feedback lines", d.lines, d.request_lines, d.feedback_lines);
  if (d.unknown_type > 0) std::printf(", %zu of other types (skipped)", d.unknown_type);
  std::printf("\n");
  if (d.malformed > 0) std::printf("  %zu malformed lines skipped (first: %s)\n", d.malformed, d.first_malformed.c_str());
  std::printf("route %s: %zu request lines; rows used %zu (last tier %zu, local accepts %zu, feedback answers %zu, "
              "confirmed by feedback %zu)\n",
              route.c_str(), r.route_lines, r.queries.size(), r.last_tier, r.local, r.feedback_answer,
              r.feedback_confirmed);
  std::printf("  skipped: %zu failed, %zu without query/response text, %zu served after the last tier failed, "
              "%zu local accepts (--include-local no), %zu served by a task tier, %zu marked wrong by feedback, "
              "%zu other decisions\n",
              r.failed, r.no_text, r.after_failure, r.local_excluded, r.task_tier, r.feedback_wrong, r.unknown);
  if (d.duplicate_requests > 0) std::printf("  %zu repeated request ids (the last line kept)\n", d.duplicate_requests);
  if (d.feedback_lines > 0)
    std::printf("feedback: %zu lines for %zu ids; %zu for ids not in the log, %zu repeated ids (the last kept), "
                "%zu malformed\n",
                d.feedback_lines, d.feedback.size(), r.feedback_unknown_ids, d.feedback_duplicates, d.feedback_bad);
}

void print_model(const rt::task_model& m, const distill_rows& r, size_t heldout_rows,
                 const rt::task_train_options& opt) {
  std::vector<size_t> counts(m.labels.size(), 0);
  size_t other = 0;
  for (const std::string& a : r.answers) {
    const std::string n = rt::normalise_answer(a);
    size_t l = 0;
    while (l < m.labels.size() && m.labels[l] != n) ++l;
    if (l < m.labels.size()) ++counts[l];
    else ++other;
  }
  std::printf("labels (%zu):", m.labels.size());
  for (size_t l = 0; l < m.labels.size(); ++l) std::printf(" %s %zu", m.labels[l].c_str(), counts[l]);
  std::printf("; rows with other answers (dropped) %zu\n", other);
  std::printf("held-out accuracy %s (%zu held-out rows, top label vs the reference)\n",
              pct(m.heldout_accuracy).c_str(), heldout_rows);
  std::printf("held-out curve:\n  %9s %9s %12s %11s %10s\n", "threshold", "answered", "answer_rate", "escalation",
              "precision");
  for (const rt::task_point& p : m.curve)
    std::printf("  %9.4f %9zu %12s %11s %10s\n", p.threshold,
                static_cast<size_t>(std::llround(p.answer_rate * static_cast<double>(heldout_rows))),
                pct(p.answer_rate).c_str(), pct(1.0 - p.answer_rate).c_str(), pct(p.precision).c_str());
  std::printf("threshold %.6f (%s)", m.threshold, m.threshold_rule.c_str());
  for (const rt::task_point& p : m.curve)
    if (p.threshold == m.threshold)
      std::printf(": answers %s of held-out rows at precision %s", pct(p.answer_rate).c_str(), pct(p.precision).c_str());
  std::printf("\n");
  if (m.threshold_rule.find("not reached") == std::string::npos) return;
  // Precision is agreement with the references, which are themselves wrong at the last tier's error rate: a
  // frontier right 85% of the time caps it near 85% however sure the model is. Say what the curve did reach.
  const rt::task_point* best = nullptr;
  for (const rt::task_point& p : m.curve)
    if (p.answer_rate * static_cast<double>(heldout_rows) >= static_cast<double>(opt.min_answered_rows) - 0.5 &&
        !std::isnan(p.precision) && (best == nullptr || p.precision > best->precision))
      best = &p;
  std::printf("note: no threshold reached precision %s on the held-out rows, so the task tier will almost never "
              "answer.\n",
              pct(opt.min_precision).c_str());
  if (best != nullptr)
    std::printf("  The best on the curve is %s, answering %s. Precision counts agreement with the served answers, "
                "and a last tier that is\n  itself wrong 15%% of the time caps it near 85%%: choose --min-precision "
                "below what the curve reaches.\n",
                pct(best->precision).c_str(), pct(best->answer_rate).c_str());
}

}  // namespace

int run_distill(int argc, char** argv) {
  const std::string cmd = "distill";
  arg_parser args{argc, argv, {}, {}};
  if (!args.parse({"log", "route", "out", "min-precision", "heldout-fraction", "min-rows", "include-local", "seed",
                   "epochs", "hash-bits", "word-ngrams", "char-ngrams"}))
    return parse_failed(args, cmd, usage);
  if (!args.has("log")) return fail(cmd, "--log is required\n" + std::string(usage));
  if (!args.has("route")) return fail(cmd, "--route is required\n" + std::string(usage));
  if (!args.has("out")) return fail(cmd, "--out is required\n" + std::string(usage));
  rt::task_train_options opt;
  std::string error;
  if (!number_option(args, "min-precision", opt.min_precision, error) ||
      !number_option(args, "heldout-fraction", opt.heldout_fraction, error) ||
      !number_option(args, "min-rows", opt.min_rows, error) || !number_option(args, "seed", opt.seed, error) ||
      !number_option(args, "epochs", opt.epochs, error) ||
      !number_option(args, "hash-bits", opt.config.hash_bits, error) ||
      !number_option(args, "word-ngrams", opt.config.word_ngram_max, error) ||
      !number_option(args, "char-ngrams", opt.config.char_ngram_max, error))
    return fail(cmd, error);
  const std::string include_local = args.get("include-local", "yes");
  if (include_local != "yes" && include_local != "no")
    return fail(cmd, "--include-local must be yes or no (got '" + include_local + "')");
  if (std::string why = rt::validate(opt.config); !why.empty()) return fail(cmd, why);
  if (!(opt.min_precision > 0.0 && opt.min_precision <= 1.0)) return fail(cmd, "--min-precision must be in (0, 1]");
  if (!(opt.heldout_fraction > 0.0 && opt.heldout_fraction < 1.0))
    return fail(cmd, "--heldout-fraction must be in (0, 1)");

  const std::string route = args.get("route");
  log_data log;
  if (!read_logs(args.all("log"), route, log, error)) return fail(cmd, error);
  distill_rows rows = select_rows(log, include_local == "yes");
  print_report(log, rows, route);
  if (rows.route_lines == 0) {
    std::string seen;
    size_t listed = 0;
    for (const std::string& r : log.routes)
      if (++listed <= 10) seen += (seen.empty() ? "" : ", ") + r;
    if (listed > 10) seen += " and " + std::to_string(listed - 10) + " more";
    return fail(cmd, "no request lines for route '" + route + "' in the log" +
                         (seen.empty() ? std::string(" (it has no request lines)") : " (routes in the log: " + seen + ")"),
                cli::exit_failed);
  }
  if (rows.no_text > 0 && rows.no_text == rows.route_lines - rows.failed)
    return fail(cmd, "the route does not log text; set log_text: true (" + std::to_string(rows.no_text) +
                         " served requests of route '" + route + "' have no query/response text)",
                cli::exit_failed);

  // The command, minus the output path, so the same distillation gives the same bytes wherever it is saved.
  opt.notes = "sluice distill";
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out") ++i;
    else if (a.rfind("--out=", 0) != 0) opt.notes += " " + a;
  }
  rt::result<rt::task_model> model = rt::train_task_model(rows.queries, rows.answers, opt);
  if (!model) return fail(cmd, "cannot make a task model from route '" + route + "': " + model.error().message,
                          cli::exit_failed);
  rt::result<rt::task_classifier> classifier = rt::task_classifier::from_model(std::move(*model));
  if (!classifier) return fail(cmd, classifier.error().message, cli::exit_failed);
  const rt::task_model& m = classifier->model();
  const size_t heldout_rows = static_cast<size_t>(
      std::floor(opt.heldout_fraction * static_cast<double>(m.rows_trained)));
  print_model(m, rows, heldout_rows, opt);
  if (rt::result<void> saved = classifier->save(args.get("out")); !saved)
    return fail(cmd, saved.error().message, cli::exit_failed);
  std::printf("refit on all %llu rows (the threshold is the held-out split's); wrote %s (%zu labels x 2^%u features)\n",
              static_cast<unsigned long long>(m.rows_trained), args.get("out").c_str(), m.labels.size(),
              m.config.hash_bits);
  return 0;
}

}  // namespace sluice::gateway
