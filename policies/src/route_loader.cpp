// See route_loader.h.
#include "route_loader.h"

#include <algorithm>
#include <regex>

#include "value_syntax.h"

namespace sluice::policies::detail {
namespace {

constexpr std::string_view route_keys[] = {"tiers",        "baseline",   "pre_score",
                                           "accept",       "local_max_tokens", "tier_timeout_ms",
                                           "timeout_ms",   "on_escalation_failure", "log_text", "shadow"};
constexpr std::string_view shadow_keys[] = {"tier", "sample"};
constexpr std::string_view pre_score_keys[] = {"classifier", "skip_local_above", "max_prompt_chars"};
constexpr std::string_view accept_keys[] = {"model", "threshold", "min_mean_logprob", "labels", "regex",
                                            "json_if_requested"};
constexpr std::string_view decision_log_keys[] = {"path", "max_bytes", "keep"};
constexpr std::string_view access_log_keys[] = {"path", "max_bytes", "keep", "level"};
constexpr int64_t max_timeout_ms = 24LL * 3600 * 1000;

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

void load_pre_score(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                    const std::string& where, pre_score_config& out) {
  for (const field& f : read_map(sink, section.value, section.key_mark, "pre_score of " + where, pre_score_keys,
                                 pre_score_keys)) {
    if (f.key == "classifier") {
      auto s = read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'classifier' must be a path to a router model file");
      else if (s) out.classifier_path = resolve_path(*s, base_dir);
    } else if (f.key == "skip_local_above") {
      if (auto v = read_number(sink, f, 0.0, 1.0)) out.skip_local_above = *v;
    } else if (f.key == "max_prompt_chars") {
      if (auto v = read_int(sink, f, 1, int64_t(1) << 40)) out.max_prompt_chars = *v;
    }
  }
}

void load_accept(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                 const std::string& where, accept_config& out) {
  for (const field& f : read_map(sink, section.value, section.key_mark, "accept of " + where, accept_keys,
                                 accept_keys)) {
    if (f.key == "model") {
      auto s = read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'model' must be a path to an acceptance model file");
      else if (s) out.model_path = resolve_path(*s, base_dir);
    } else if (f.key == "threshold") {
      out.threshold = read_number(sink, f, 0.0, 1.0);
    } else if (f.key == "min_mean_logprob") {
      out.min_mean_logprob = read_number(sink, f, -1000.0, 0.0);
    } else if (f.key == "labels") {
      auto v = read_string_list(sink, f);
      if (!v) continue;
      if (v->empty()) {
        sink.add(f.value_mark(), "'labels' must list at least one allowed answer");
        continue;
      }
      std::vector<std::string> seen;
      for (const std::string& l : *v) {
        if (std::find(seen.begin(), seen.end(), l) != seen.end()) {
          sink.add(f.value_mark(), "'labels' lists " + in_quotes(l) + " twice");
          break;
        }
        seen.push_back(l);
      }
      out.labels = std::move(*v);
    } else if (f.key == "regex") {
      auto s = read_string(sink, f);
      if (!s) continue;
      try {
        std::regex check(*s, std::regex::ECMAScript);
        out.regex = *s;
      } catch (const std::regex_error& e) {
        sink.add(f.value_mark(), "'regex' is not a valid ECMAScript regular expression: " + std::string(e.what()));
      }
    } else if (f.key == "json_if_requested") {
      if (auto v = read_bool(sink, f)) out.json_if_requested = *v;
    }
  }
}

}  // namespace

void load_routes(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                 std::vector<loaded_route>& out) {
  if (!section.value.IsMap()) {
    read_map(sink, section.value, section.key_mark, "routes", {}, {});  // reports the type
    return;
  }
  std::vector<std::string> names;
  for (auto it = section.value.begin(); it != section.value.end(); ++it) {
    if (it->first.IsScalar()) names.push_back(it->first.Scalar());
  }
  std::vector<std::string_view> name_views(names.begin(), names.end());
  for (const field& entry : read_map(sink, section.value, section.key_mark, "routes", name_views, {})) {
    loaded_route lr;
    route_config& r = lr.route;
    r.name = entry.key;
    r.line = entry.key_mark.line + 1;
    lr.mark = entry.key_mark;
    const std::string where = "route " + in_quotes(r.name);
    if (!is_model_name(r.name)) {
      sink.add(entry.key_mark, "invalid route name " + in_quotes(r.name) +
                                   ": use letters, digits and . _ : / - (at most 256 characters)");
    }
    bool saw_tiers = false;
    for (const field& f : read_map(sink, entry.value, entry.key_mark, where, route_keys, route_keys)) {
      if (f.key == "tiers") {
        saw_tiers = true;
        if (auto v = read_string_list(sink, f)) {
          if (v->empty()) sink.add(f.value_mark(), "'tiers' must list at least one model, cheapest first");
          r.tiers = std::move(*v);
        }
      } else if (f.key == "baseline") {
        if (auto s = read_string(sink, f)) r.baseline = *s;
      } else if (f.key == "pre_score") {
        load_pre_score(sink, f, base_dir, where, r.pre_score);
      } else if (f.key == "accept") {
        load_accept(sink, f, base_dir, where, r.accept);
      } else if (f.key == "local_max_tokens") {
        if (auto v = read_int(sink, f, 1, 1 << 20)) r.local_max_tokens = static_cast<int>(*v);
      } else if (f.key == "tier_timeout_ms") {
        if (auto v = read_int(sink, f, 1, max_timeout_ms)) r.tier_timeout = std::chrono::milliseconds(*v);
      } else if (f.key == "timeout_ms") {
        if (auto v = read_int(sink, f, 1, max_timeout_ms)) r.timeout = std::chrono::milliseconds(*v);
      } else if (f.key == "on_escalation_failure") {
        auto s = read_string(sink, f);
        if (s && *s == "error") r.on_escalation_failure = escalation_failure::error;
        else if (s && *s == "serve_local") r.on_escalation_failure = escalation_failure::serve_local;
        else if (s) sink.add(f.value_mark(), "'on_escalation_failure' must be error or serve_local, got " + in_quotes(*s));
      } else if (f.key == "log_text") {
        if (auto v = read_bool(sink, f)) r.log_text = *v;
      } else if (f.key == "shadow") {
        for (const field& g : read_map(sink, f.value, f.key_mark, "shadow of " + where, shadow_keys, shadow_keys)) {
          if (g.key == "tier") {
            if (auto s = read_string(sink, g)) r.shadow.tier = *s;
          } else if (g.key == "sample") {
            if (auto v = read_number(sink, g, 0.0, 1.0)) r.shadow.sample = *v;
          }
        }
        if (f.value.IsMap() && r.shadow.tier.empty()) sink.add(f.key_mark, "'shadow' of " + where + " needs a 'tier'");
      }
    }
    if (entry.value.IsMap() && !saw_tiers) {
      sink.add(entry.key_mark, where + " has no 'tiers'; list its models cheapest first, e.g. 'tiers: [local, frontier]'");
    }
    out.push_back(std::move(lr));
  }
}

void load_decision_log(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                       decision_log_config& out) {
  bool saw_path = false;
  const std::string what = section.key;  // decision_log or access_log
  const bool access = what == "access_log";
  const std::span<const std::string_view> keys = access ? std::span<const std::string_view>(access_log_keys)
                                                        : std::span<const std::string_view>(decision_log_keys);
  for (const field& f : read_map(sink, section.value, section.key_mark, what, keys, keys)) {
    if (f.key == "path") {
      saw_path = true;
      auto s = read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'path' must name the log file (or '-' for standard error)");
      else if (s && *s == "-") out.path = "-";  // standard error, never rotated
      else if (s) out.path = resolve_path(*s, base_dir);
    } else if (f.key == "max_bytes") {
      const std::string text = f.value.IsScalar() ? f.value.Scalar() : "";
      auto bytes = f.value.IsScalar() ? parse_byte_size(text) : std::nullopt;
      if (!bytes || *bytes < 4096) {
        sink.add(f.value_mark(), "'max_bytes' must be a size of at least 4KiB, such as \"100MiB\"");
        continue;
      }
      out.max_bytes = *bytes;
    } else if (f.key == "keep") {
      if (auto v = read_int(sink, f, 0, 1000)) out.keep = static_cast<int>(*v);
    } else if (f.key == "level") {
      auto s = read_string(sink, f);
      auto l = s ? parse_log_level(*s) : std::nullopt;
      if (s && (!l || *l == log_level::debug))
        sink.add(f.value_mark(), "'level' must be info (every request), warn (4xx and 5xx) or error (5xx and cut "
                                 "streams), got " + in_quotes(*s));
      else if (l) out.level = *l;
    }
  }
  if (section.value.IsMap() && !saw_path) sink.add(section.key_mark, "'" + what + "' needs a 'path'");
}

void check_routes(error_sink& sink, const std::vector<model_config>& models, std::vector<loaded_route>& routes) {
  auto find = [&](const std::string& name) -> const model_config* {
    for (const auto& m : models)
      if (m.name == name) return &m;
    return nullptr;
  };
  for (loaded_route& lr : routes) {
    route_config& r = lr.route;
    const std::string where = "route " + in_quotes(r.name);
    if (find(r.name)) {
      sink.add(lr.mark, where + " has the name of a model; clients name either one, so names must differ");
    }
    std::vector<std::string> seen;
    for (const std::string& t : r.tiers) {
      const model_config* m = find(t);
      if (!m) {
        std::string known;
        for (const auto& x : models) known += (known.empty() ? "" : ", ") + x.name;
        sink.add(lr.mark, where + ": tier " + in_quotes(t) + " is not a model of this policy (models: " + known + ")");
      }
      if (std::find(seen.begin(), seen.end(), t) != seen.end()) {
        sink.add(lr.mark, where + ": tier " + in_quotes(t) + " is listed twice");
      }
      seen.push_back(t);
    }
    if (!r.baseline.empty() && !find(r.baseline)) {
      sink.add(lr.mark, where + ": baseline " + in_quotes(r.baseline) + " is not a model of this policy");
    }
    if (r.baseline.empty() && !r.tiers.empty()) r.baseline = r.tiers.back();
    if (!r.accept.model_path.empty() && r.accept.min_mean_logprob) {
      sink.add(lr.mark, where + ": 'accept' has both 'model' and 'min_mean_logprob'; use one rule");
    }
    if (r.accept.threshold && r.accept.model_path.empty()) {
      sink.add(lr.mark, where + ": 'accept.threshold' applies to an acceptance 'model'; add one or remove it");
    }
    if (!r.shadow.tier.empty()) {
      const model_config* m = find(r.shadow.tier);
      if (!m) sink.add(lr.mark, where + ": shadow tier " + in_quotes(r.shadow.tier) + " is not a model of this policy");
      else if (m->kind != model_kind::task)
        sink.add(lr.mark, where + ": shadow tier " + in_quotes(r.shadow.tier) + " must be of kind 'task' (it answers in "
                          "microseconds beside the route; other kinds would double the route's cost)");
    }
    if (r.tiers.size() == 1 && (!r.accept.model_path.empty() || r.accept.min_mean_logprob || r.pre_score.enabled())) {
      sink.add(lr.mark, where + " has one tier: 'accept' rules and 'pre_score' need a tier to escalate to");
    }
  }
}

}  // namespace sluice::policies::detail
