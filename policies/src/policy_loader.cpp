// The policy schema: turns YAML text into an immutable, validated `policy`, collecting every error with its
// position. yaml-cpp reports problems by throwing; every throw is caught here so the public functions return
// values. What must not go in here: reading secrets (the loader only records env var NAMES), network or engine
// access, routing logic.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <arpa/inet.h>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "sluice/policies/policy.h"
#include "access_loader.h"
#include "route_loader.h"
#include "value_syntax.h"
#include "yaml_fields.h"

namespace sluice::policies {
namespace {

using detail::error_sink;
using detail::field;
using key_list = std::span<const std::string_view>;

constexpr std::string_view top_keys[] = {"server", "models",    "routes",       "decision_log",
                                          "keys",   "teams",     "keys_file",    "limits_state",
                                          "access_log"};
constexpr std::string_view server_keys[] = {"listen",          "port",           "threads",
                                            "max_body_bytes",  "header_timeout_ms", "body_timeout_ms",
                                            "idle_timeout_ms", "request_timeout_ms", "max_connections",
                                            "shutdown_grace_ms", "log_level"};
constexpr std::string_view remote_model_keys[] = {"kind",          "base_url",         "model",      "api_key_env",
                                                  "timeout_ms",    "cost_per_mtok",    "tls_ca_file", "cost_per_request",
                                                  "retries",       "circuit_breaker",  "fallbacks"};
constexpr std::string_view anthropic_model_keys[] = {"kind",        "base_url",        "model",       "api_key_env",
                                                     "timeout_ms",  "cost_per_mtok",   "tls_ca_file", "cost_per_request",
                                                     "retries",     "circuit_breaker", "fallbacks",   "cache_system_prompt"};
constexpr std::string_view local_model_keys[] = {"kind",          "gguf",          "chat_template", "threads",
                                                 "context_tokens", "max_sequences", "timeout_ms",   "cost_per_mtok",
                                                 "kv_cache_mib",  "prefix_cache",  "step_token_budget", "device",
                                                 "cost_per_request", "fallbacks"};
constexpr std::string_view task_model_keys[] = {"kind", "task_model", "cost_per_request", "cost_per_mtok", "fallbacks"};
constexpr std::string_view all_model_keys[] = {"kind",          "base_url", "model",          "api_key_env",
                                               "timeout_ms",    "cost_per_mtok", "gguf",       "chat_template",
                                               "threads",       "context_tokens", "max_sequences", "tls_ca_file",
                                               "kv_cache_mib", "prefix_cache", "step_token_budget", "device",
                                               "task_model", "cost_per_request",
                                               "retries",       "circuit_breaker", "fallbacks",
                                               "cache_system_prompt"};
constexpr std::string_view retry_keys[] = {"max", "base_ms", "max_ms"};
constexpr std::string_view breaker_keys[] = {"failures", "open_ms", "failure_ratio", "window"};
// Keys people reach for when pasting a credential. They get a message pointing at api_key_env instead of
// "unknown key", and their values are never echoed.
constexpr std::string_view secret_keys[] = {"api_key", "apikey", "key",      "secret",       "token",
                                            "password", "bearer", "access_token", "authorization"};
constexpr std::string_view cost_keys[] = {"input", "cached_input", "cache_write", "output"};
constexpr std::string_view kind_names[] = {"openai", "anthropic", "local", "task"};
constexpr std::string_view chat_templates[] = {"chatml", "llama3", "gemma"};

constexpr int64_t max_timeout_ms = 24LL * 3600 * 1000;  // a day: anything longer is a typo

bool contains(key_list keys, std::string_view k) { return std::find(keys.begin(), keys.end(), k) != keys.end(); }

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

std::optional<model_kind> kind_from(std::string_view s) {
  if (s == "openai") return model_kind::openai;
  if (s == "anthropic") return model_kind::anthropic;
  if (s == "local") return model_kind::local;
  if (s == "task") return model_kind::task;
  return std::nullopt;
}

std::optional<std::chrono::milliseconds> read_ms(error_sink& sink, const field& f, int64_t min_ms) {
  auto v = detail::read_int(sink, f, min_ms, max_timeout_ms);
  if (!v) return std::nullopt;
  return std::chrono::milliseconds{*v};
}

bool is_ip_literal(const std::string& s) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buffer) == 1 || inet_pton(AF_INET6, s.c_str(), buffer) == 1;
}

// Command-line values replace the YAML's before the policy is frozen; they are checked like YAML values.
void apply_overrides(error_sink& sink, const server_overrides& o, server_config& out) {
  if (o.port) out.port = *o.port;
  if (o.listen_address) {
    if (is_ip_literal(*o.listen_address)) out.listen_address = *o.listen_address;
    else sink.add_unplaced("--listen must be an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got " +
                           in_quotes(*o.listen_address));
  }
  if (o.shutdown_grace) {
    if (o.shutdown_grace->count() >= 0 && o.shutdown_grace->count() <= max_timeout_ms) out.shutdown_grace = *o.shutdown_grace;
    else sink.add_unplaced("--shutdown-grace must be between 0 and 86400 seconds");
  }
  if (o.log_level) {
    if (auto l = parse_log_level(*o.log_level)) out.log = *l;
    else sink.add_unplaced("--log-level must be debug, info, warn or error, got " + in_quotes(*o.log_level));
  }
}

void load_server(error_sink& sink, const field& section, server_config& out) {
  for (const field& f : detail::read_map(sink, section.value, section.key_mark, "server", server_keys, server_keys)) {
    if (f.key == "listen") {
      auto s = detail::read_string(sink, f);
      if (!s) continue;
      if (!is_ip_literal(*s)) {
        sink.add(f.value_mark(), "'listen' must be an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got " + in_quotes(*s));
        continue;
      }
      out.listen_address = *s;
    } else if (f.key == "port") {
      if (auto v = detail::read_int(sink, f, 0, 65535)) out.port = static_cast<uint16_t>(*v);
    } else if (f.key == "threads") {
      if (auto v = detail::read_int(sink, f, 0, 1024)) out.threads = static_cast<int>(*v);
    } else if (f.key == "max_body_bytes") {
      const std::string text = f.value.IsScalar() ? f.value.Scalar() : "";
      auto bytes = f.value.IsScalar() ? detail::parse_byte_size(text) : std::nullopt;
      if (!bytes || *bytes == 0) {
        sink.add(f.value_mark(), "'max_body_bytes' must be a positive size in bytes, such as 4194304, \"4MiB\" or "
                                 "\"512KiB\" (units: B, KiB, MiB, GiB, KB, MB, GB)");
        continue;
      }
      out.max_body_bytes = *bytes;
    } else if (f.key == "header_timeout_ms") {
      if (auto v = read_ms(sink, f, 1)) out.header_timeout = *v;
    } else if (f.key == "body_timeout_ms") {
      if (auto v = read_ms(sink, f, 1)) out.body_timeout = *v;
    } else if (f.key == "idle_timeout_ms") {
      if (auto v = read_ms(sink, f, 1)) out.idle_timeout = *v;
    } else if (f.key == "request_timeout_ms") {
      if (auto v = read_ms(sink, f, 1)) out.request_timeout = *v;
    } else if (f.key == "max_connections") {
      if (auto v = detail::read_int(sink, f, 1, 1'000'000)) out.max_connections = static_cast<uint32_t>(*v);
    } else if (f.key == "shutdown_grace_ms") {
      if (auto v = read_ms(sink, f, 0)) out.shutdown_grace = *v;
    } else if (f.key == "log_level") {
      auto s = detail::read_string(sink, f);
      auto l = s ? parse_log_level(*s) : std::nullopt;
      if (s && !l) sink.add(f.value_mark(), "'log_level' must be debug, info, warn or error, got " + in_quotes(*s));
      else if (l) out.log = *l;
    }
  }
}

void load_costs(error_sink& sink, const field& section, model_config& m) {
  std::optional<double> input, cached_input, cache_write, output;
  const std::string where = "cost_per_mtok of model " + in_quotes(m.name);
  for (const field& f : detail::read_map(sink, section.value, section.key_mark, where, cost_keys, cost_keys)) {
    auto v = detail::read_non_negative_number(sink, f);
    if (f.key == "input") input = v;
    else if (f.key == "cached_input") cached_input = v;
    else if (f.key == "cache_write") cache_write = v;
    else if (f.key == "output") output = v;
  }
  m.price.input_usd = input.value_or(0.0);
  m.price.cached_input_usd = cached_input.value_or(m.price.input_usd);
  // Anthropic bills 5-minute cache writes at 1.25x the input price; other providers have no write surcharge.
  m.price.cache_write_usd = cache_write.value_or(m.kind == model_kind::anthropic ? 1.25 * m.price.input_usd
                                                                                  : m.price.input_usd);
  m.price.output_usd = output.value_or(0.0);
}

std::optional<model_config> load_model(error_sink& sink, const field& entry, const std::filesystem::path& base_dir) {
  model_config m;
  m.name = entry.key;
  m.line = entry.key_mark.line + 1;
  const std::string where = "model " + in_quotes(m.name);
  const std::size_t errors_before = sink.errors().size();
  if (!detail::is_model_name(m.name)) {
    sink.add(entry.key_mark, "invalid model name " + in_quotes(m.name) +
                                 ": use letters, digits and . _ : / - (at most 256 characters)");
  }

  // The kind decides which keys are valid, so it is read first.
  std::optional<model_kind> kind;
  if (entry.value.IsMap()) {
    for (auto it = entry.value.begin(); it != entry.value.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == "kind" && it->second.IsScalar()) {
        kind = kind_from(it->second.Scalar());
        break;
      }
    }
  }
  if (kind) m.kind = *kind;
  key_list kind_keys = !kind                         ? key_list(all_model_keys)
                       : *kind == model_kind::local ? key_list(local_model_keys)
                       : *kind == model_kind::task  ? key_list(task_model_keys)
                       : *kind == model_kind::anthropic ? key_list(anthropic_model_keys)
                                                    : key_list(remote_model_keys);
  std::vector<std::string_view> accepted(std::begin(all_model_keys), std::end(all_model_keys));
  accepted.insert(accepted.end(), std::begin(secret_keys), std::end(secret_keys));

  bool saw_kind = false, saw_base_url = false, saw_gguf = false, saw_model = false, saw_task_model = false;
  for (const field& f : detail::read_map(sink, entry.value, entry.key_mark, where, accepted, kind_keys)) {
    if (contains(secret_keys, f.key)) {
      sink.add(f.key_mark, "'" + f.key + "' in " + where + " is not allowed: a policy never holds secrets. Put the "
                           "key in an environment variable and name it with 'api_key_env: VARIABLE_NAME'");
      continue;
    }
    if (f.key == "kind") {
      saw_kind = true;
      auto s = detail::read_string(sink, f);
      if (s && !kind_from(*s)) {
        sink.add(f.value_mark(), "'kind' must be one of openai, anthropic, local, task, got " + in_quotes(*s));
      }
      continue;
    }
    if (kind && !contains(kind_keys, f.key)) {
      sink.add(f.key_mark, "key '" + f.key + "' does not apply to " + where + " of kind '" + to_string(*kind) + "'; " +
                               detail::list_keys(kind_keys));
      continue;
    }
    if (f.key == "base_url") {
      saw_base_url = true;
      auto s = detail::read_string(sink, f);
      if (!s) continue;
      std::string why;
      if (auto e = detail::parse_base_url(*s, why)) {
        m.base_url = *s;
        while (!m.base_url.empty() && m.base_url.back() == '/') m.base_url.pop_back();
        m.upstream = std::move(*e);
      } else {
        sink.add(f.value_mark(), why);
      }
    } else if (f.key == "model") {
      saw_model = true;
      auto s = detail::read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'model' must not be empty");
      else if (s) m.upstream_model = *s;
    } else if (f.key == "api_key_env") {
      auto s = detail::read_string(sink, f);
      if (!s) continue;
      if (!detail::is_env_var_name(*s)) {
        // The value is not echoed: a mistake here is often the key itself pasted in.
        sink.add(f.value_mark(), "'api_key_env' must be the NAME of an environment variable (like OPENAI_API_KEY, "
                                 "matching [A-Z_][A-Z0-9_]*), never the key itself");
        continue;
      }
      m.api_key_env = *s;
    } else if (f.key == "tls_ca_file") {
      auto s = detail::read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'tls_ca_file' must be a path to a PEM file of CA certificates");
      else if (s) m.tls_ca_file = detail::resolve_path(*s, base_dir);
    } else if (f.key == "timeout_ms") {
      if (auto v = read_ms(sink, f, 0)) m.timeout = *v;
    } else if (f.key == "cache_system_prompt") {
      if (auto v = detail::read_bool(sink, f)) m.cache_system_prompt = *v;
    } else if (f.key == "cost_per_mtok") {
      load_costs(sink, f, m);
    } else if (f.key == "gguf") {
      saw_gguf = true;
      auto s = detail::read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'gguf' must be a path to a .gguf file");
      else if (s) m.local.gguf_path = detail::resolve_path(*s, base_dir);
    } else if (f.key == "device") {
      auto d = detail::read_string(sink, f);
      if (d && *d != "cpu" && *d != "cuda" && *d != "auto")
        sink.add(f.value_mark(), "'device' must be cpu, cuda or auto, got " + in_quotes(*d));
      else if (d) m.local.device = *d;
    } else if (f.key == "chat_template") {
      auto s = detail::read_string(sink, f);
      if (s && !contains(chat_templates, *s)) {
        sink.add(f.value_mark(), "'chat_template' must be one of chatml, llama3 (or left out to detect it from the "
                                 "GGUF), got " + in_quotes(*s));
      } else if (s) {
        m.local.chat_template = *s;
      }
    } else if (f.key == "threads") {
      if (auto v = detail::read_int(sink, f, 0, 1024)) m.local.threads = static_cast<int>(*v);
    } else if (f.key == "context_tokens") {
      if (auto v = detail::read_int(sink, f, 16, 1 << 20)) m.local.context_tokens = static_cast<int>(*v);
    } else if (f.key == "max_sequences") {
      if (auto v = detail::read_int(sink, f, 1, 1024)) m.local.max_sequences = static_cast<int>(*v);
    } else if (f.key == "kv_cache_mib") {
      if (auto v = detail::read_int(sink, f, 1, 1 << 20)) m.local.kv_cache_mib = static_cast<int>(*v);
    } else if (f.key == "prefix_cache") {
      if (auto v = detail::read_bool(sink, f)) m.local.prefix_cache = *v;
    } else if (f.key == "step_token_budget") {
      if (auto v = detail::read_int(sink, f, 1, 65536)) m.local.step_token_budget = static_cast<int>(*v);
    } else if (f.key == "task_model") {
      saw_task_model = true;
      auto s = detail::read_string(sink, f);
      if (s && s->empty()) sink.add(f.value_mark(), "'task_model' must be a path to a task model file (sluice distill)");
      else if (s) m.task_model_path = detail::resolve_path(*s, base_dir);
    } else if (f.key == "cost_per_request") {
      if (auto v = detail::read_non_negative_number(sink, f)) m.price.request_usd = *v;
    } else if (f.key == "retries") {
      if (f.value.IsScalar()) {
        if (auto v = detail::read_int(sink, f, 0, 10)) m.retries.max_retries = static_cast<int>(*v);
        continue;
      }
      for (const field& r : detail::read_map(sink, f.value, f.key_mark, "retries of " + where, retry_keys, retry_keys)) {
        if (r.key == "max") {
          if (auto v = detail::read_int(sink, r, 0, 10)) m.retries.max_retries = static_cast<int>(*v);
        } else if (r.key == "base_ms") {
          if (auto v = detail::read_int(sink, r, 1, 60'000)) m.retries.base = std::chrono::milliseconds(*v);
        } else if (r.key == "max_ms") {
          if (auto v = detail::read_int(sink, r, 1, 600'000)) m.retries.max_backoff = std::chrono::milliseconds(*v);
        }
      }
    } else if (f.key == "circuit_breaker") {
      if (f.value.IsScalar() && (f.value.Scalar() == "off" || f.value.Scalar() == "false")) {
        m.breaker.failures = 0;
        m.breaker.failure_ratio = 0.0;
        continue;
      }
      for (const field& b : detail::read_map(sink, f.value, f.key_mark, "circuit_breaker of " + where, breaker_keys,
                                             breaker_keys)) {
        if (b.key == "failures") {
          if (auto v = detail::read_int(sink, b, 0, 1'000'000)) m.breaker.failures = static_cast<int>(*v);
        } else if (b.key == "open_ms") {
          if (auto v = detail::read_int(sink, b, 1, max_timeout_ms)) m.breaker.open_for = std::chrono::milliseconds(*v);
        } else if (b.key == "failure_ratio") {
          auto v = detail::read_non_negative_number(sink, b);
          if (v && *v > 1.0) sink.add(b.value_mark(), "'failure_ratio' must be a fraction in 0..1 (0 turns the rule off)");
          else if (v) m.breaker.failure_ratio = *v;
        } else if (b.key == "window") {
          if (auto v = detail::read_int(sink, b, 2, 10'000)) m.breaker.window = static_cast<int>(*v);
        }
      }
    } else if (f.key == "fallbacks") {
      if (auto v = detail::read_string_list(sink, f)) m.fallbacks = std::move(*v);
    }
  }
  if (!entry.value.IsMap()) return std::nullopt;  // read_map reported it
  if (m.kind == model_kind::local || m.kind == model_kind::task) {
    m.retries.max_retries = 0;
    m.breaker.failures = 0;
    m.breaker.failure_ratio = 0.0;
  }

  if (!saw_kind) {
    sink.add(entry.key_mark, where + " has no 'kind'; add 'kind: openai', 'kind: anthropic', 'kind: local' or 'kind: task'");
  } else if (kind && *kind == model_kind::task && !saw_task_model) {
    sink.add(entry.key_mark, where + " of kind 'task' needs a 'task_model' path (a model file from sluice distill)");
  } else if (kind && *kind != model_kind::local && *kind != model_kind::task && !saw_base_url) {
    sink.add(entry.key_mark, where + " of kind '" + to_string(*kind) + "' needs a 'base_url' (e.g. " +
                                 (*kind == model_kind::anthropic ? "https://api.anthropic.com/v1"
                                                                 : "https://api.openai.com/v1") + ")");
  } else if (kind && *kind == model_kind::local && !saw_gguf) {
    sink.add(entry.key_mark, where + " of kind 'local' needs a 'gguf' path");
  }
  if (!saw_model || m.kind == model_kind::local || m.kind == model_kind::task) m.upstream_model = m.name;
  // Defaults for cost_per_mtok when the section is absent (all zero; cache_write follows input).
  if (sink.errors().size() != errors_before) return std::nullopt;
  return m;
}

void load_models(error_sink& sink, const field& section, const std::filesystem::path& base_dir,
                 std::vector<model_config>& out) {
  if (!section.value.IsMap()) {
    detail::read_map(sink, section.value, section.key_mark, "models", {}, {});  // reports the type
    return;
  }
  if (section.value.size() == 0) {
    sink.add(section.value_mark(), "'models' is empty; define at least one model");
    return;
  }
  // Model names are free-form: accept any key here, duplicates are still reported by read_map.
  std::vector<std::string> names;
  for (auto it = section.value.begin(); it != section.value.end(); ++it) {
    if (it->first.IsScalar()) names.push_back(it->first.Scalar());
  }
  std::vector<std::string_view> name_views(names.begin(), names.end());
  for (const field& entry : detail::read_map(sink, section.value, section.key_mark, "models", name_views, {})) {
    if (auto m = load_model(sink, entry, base_dir)) out.push_back(std::move(*m));
  }
}

// Fallbacks name other models of the policy, each once, never the model itself.
void check_fallbacks(error_sink& sink, const YAML::Node& root, const std::vector<model_config>& models) {
  for (const model_config& m : models) {
    std::vector<std::string> seen;
    for (const std::string& f : m.fallbacks) {
      const YAML::Mark at = root["models"][m.name]["fallbacks"].Mark();
      const bool known = std::any_of(models.begin(), models.end(), [&](const model_config& x) { return x.name == f; });
      if (f == m.name) sink.add(at, "model " + in_quotes(m.name) + " lists itself in 'fallbacks'");
      else if (!known) sink.add(at, "model " + in_quotes(m.name) + " falls back to " + in_quotes(f) + ", which is not a model of the policy");
      else if (std::find(seen.begin(), seen.end(), f) != seen.end()) sink.add(at, "model " + in_quotes(m.name) + " lists " + in_quotes(f) + " twice in 'fallbacks'");
      seen.push_back(f);
    }
  }
}

// Records where each document starts; the content is read later with YAML::Load.
class document_starts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;
  void OnDocumentStart(const YAML::Mark& mark) override { marks.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// Checks that the text holds at most one document. Not YAML::LoadAll: yaml-cpp 0.7 never consumes a stray ','
// at the start of a document, so LoadAll appends empty documents until memory runs out (a policy of ",a" took
// 8 GB here). Walking documents by hand lets us notice a document that makes no progress and stop.
bool check_single_document(error_sink& sink, const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  document_starts starts;
  // Three documents are enough to tell "more than one" from "stuck" (a '---' can precede the stuck one).
  while (starts.marks.size() < 3 && parser.HandleNextDocument(starts)) {
    const auto& m = starts.marks;
    if (m.size() >= 2 && m[m.size() - 2].pos == m.back().pos) {
      const int pos = m.back().pos;
      const std::string what = pos >= 0 && static_cast<std::size_t>(pos) < text.size()
                                   ? "'" + std::string(1, text[static_cast<std::size_t>(pos)]) + "'"
                                   : "token";
      sink.add(m.back(), "invalid YAML: unexpected " + what + " at the start of a document");
      return false;
    }
  }
  if (starts.marks.size() > 1) {
    sink.add(starts.marks[1], "a policy file holds one YAML document; remove the second one (and its '---')");
    return false;
  }
  return true;
}

load_result load_text(std::string_view yaml, std::string source, const std::filesystem::path& base_dir,
                      const server_overrides& overrides) {
  error_sink sink(source);
  auto result = std::make_shared<policy>();
  result->source = source;
  try {
    const std::string text(yaml);
    if (!check_single_document(sink, text)) return std::move(sink.errors());
    const YAML::Node root = YAML::Load(text);
    if (root.IsNull() || !root.IsDefined()) {
      sink.add_unplaced("the policy is empty; expected a map with keys: server, models, routes, decision_log");
    } else {
      bool saw_models = false;
      std::vector<detail::loaded_route> routes;
      for (const field& section : detail::read_map(sink, root, root.Mark(), "the policy (top level)", top_keys,
                                                   top_keys)) {
        if (section.key == "server") load_server(sink, section, result->server);
        if (section.key == "models") {
          saw_models = true;
          load_models(sink, section, base_dir, result->models);
        }
        if (section.key == "routes") detail::load_routes(sink, section, base_dir, routes);
        if (section.key == "decision_log") detail::load_decision_log(sink, section, base_dir, result->decision_log);
        if (section.key == "keys") detail::load_keys(sink, section, result->keys);
        if (section.key == "teams") detail::load_teams(sink, section, result->teams);
        if (section.key == "keys_file") {
          if (root["keys"] || root["teams"]) {
            sink.add(section.key_mark, "keys_file replaces the 'keys' and 'teams' sections; use one or the other");
          } else {
            detail::load_keys_file(sink, section, base_dir, *result);
          }
        }
        if (section.key == "limits_state") detail::load_limits_state(sink, section, result->limits_state);
        if (section.key == "access_log") detail::load_decision_log(sink, section, base_dir, result->access_log);
      }
      if (root.IsMap() && !saw_models) sink.add_unplaced("the policy has no 'models' section; define at least one model");
      detail::check_routes(sink, result->models, routes);
      check_fallbacks(sink, root, result->models);
      for (auto& r : routes) result->routes.push_back(std::move(r.route));
      if (root.IsMap()) detail::check_access(sink, root, *result);
    }
    apply_overrides(sink, overrides, result->server);
  } catch (const YAML::Exception& e) {
    // Syntax errors stop yaml-cpp's parser, so there is at most one of them.
    sink.add(e.mark, "invalid YAML: " + e.msg);
  } catch (const std::exception& e) {
    sink.add_unplaced(std::string("could not load the policy: ") + e.what());
  }
  if (!sink.errors().empty()) {
    auto errors = std::move(sink.errors());
    // Document order; errors without a position last.
    std::stable_sort(errors.begin(), errors.end(), [](const load_error& a, const load_error& b) {
      auto key = [](const load_error& e) { return std::pair(e.line == 0 ? INT32_MAX : e.line, e.column); };
      return key(a) < key(b);
    });
    return errors;
  }
  return std::shared_ptr<const policy>(std::move(result));
}

}  // namespace

load_result load_policy_string(std::string_view yaml, std::string_view source_name,
                               const server_overrides& overrides) {
  // Relative gguf paths resolve against the source's folder when the source names a file, else the cwd.
  std::filesystem::path base_dir;
  if (!source_name.empty() && source_name.front() != '<') {
    std::error_code ec;
    base_dir = std::filesystem::absolute(std::filesystem::path(source_name), ec).parent_path();
  }
  return load_text(yaml, std::string(source_name), base_dir, overrides);
}

load_result load_policy_file(const std::string& path, const server_overrides& overrides) {
  constexpr std::uintmax_t max_policy_bytes = 16 << 20;  // policies are small; refuse to slurp a device or a log
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  std::string problem;
  if (ec) problem = "cannot read policy file: " + ec.message();
  else if (!std::filesystem::is_regular_file(status)) problem = "cannot read policy file: not a regular file";
  else if (std::filesystem::file_size(path, ec) > max_policy_bytes) problem = "policy file is larger than 16 MiB";
  std::string text;
  if (problem.empty()) {
    std::ifstream in(path, std::ios::binary);
    if (!in.is_open()) {
      problem = std::string("cannot open policy file: ") + std::strerror(errno);
    } else {
      std::ostringstream buffer;
      buffer << in.rdbuf();
      if (in.bad()) problem = std::string("cannot read policy file: ") + std::strerror(errno);
      text = std::move(buffer).str();
    }
  }
  if (!problem.empty()) return std::vector<load_error>{load_error{path, 0, 0, problem}};
  return load_policy_string(text, path, overrides);
}

}  // namespace sluice::policies
