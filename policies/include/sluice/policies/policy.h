// The policy data model: an immutable, validated view of the YAML, shared by reference
// (std::shared_ptr<const policy>) and swapped atomically on reload. The hot path reads only these structs,
// never YAML. What must not go in here: yaml-cpp types, HTTP, routing logic.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

namespace sluice::policies {

// How much the gateway says on standard error (and which access-log lines it keeps): debug < info < warn < error.
enum class log_level { debug, info, warn, error };
const char* to_string(log_level l);                      // "debug", "info", "warn", "error"
std::optional<log_level> parse_log_level(std::string_view s);

struct server_config {
  std::string listen_address = "127.0.0.1";
  uint16_t port = 8080;  // 0 = pick a free port (tests); the bound port is printed on start
  int threads = 0;       // io_context threads; 0 = one per core
  uint64_t max_body_bytes = 4 * 1024 * 1024;
  std::chrono::milliseconds header_timeout{10'000};   // total time to receive the request head
  std::chrono::milliseconds body_timeout{30'000};     // total time to receive the body
  std::chrono::milliseconds idle_timeout{60'000};     // keep-alive idle time between requests
  std::chrono::milliseconds request_timeout{600'000}; // default upstream deadline for a whole request
  uint32_t max_connections = 10'000;
  // On SIGTERM/SIGINT: how long requests in flight may run before they are cut (streams get an in-band
  // error event, unanswered requests a 503). A second signal cuts at once.
  std::chrono::milliseconds shutdown_grace{10'000};
  // Lines on standard error below this level are not written (debug adds one line per retry). A reload applies
  // a new value at once.
  log_level log = log_level::info;
};

// Settings given on the command line (`sluice serve --port ...`). They are applied by the loader, before the
// policy is frozen, and checked like the YAML values they replace.
struct server_overrides {
  std::optional<uint16_t> port;
  std::optional<std::string> listen_address;
  std::optional<std::chrono::milliseconds> shutdown_grace;
  std::optional<std::string> log_level;  // --log-level
};

enum class model_kind { openai, anthropic, local, task };

// USD per million tokens. cached_input defaults to input when the YAML leaves it out.
struct price_per_mtok {
  double input_usd = 0.0;
  double cached_input_usd = 0.0;
  double cache_write_usd = 0.0;  // Anthropic cache writes; defaults to 1.25 x input for kind anthropic
  double output_usd = 0.0;
  double request_usd = 0.0;  // per request, on top of the token prices (`cost_per_request`; e.g. a task tier)
};

// base_url split into its parts at load time, so the upstream client never parses URLs.
struct endpoint {
  bool tls = false;       // https
  std::string host;       // DNS name or IP literal (IPv6 without brackets)
  uint16_t port = 0;      // explicit, or the scheme's default (80, 443)
  std::string base_path;  // "/v1"; "" when the URL has no path; never ends with '/'
};

struct local_model_config {
  std::string gguf_path;      // resolved relative to the policy file's folder
  std::string chat_template;  // "" = detect from the GGUF; else "chatml", "llama3" or "gemma"
  int threads = 0;            // compute threads; 0 = one per core
  int context_tokens = 2048;  // per-sequence context length
  int max_sequences = 8;      // sequences decoded together (continuous batching)
  // The KV cache: one pool of blocks shared by running sequences and the prefix cache (docs/engine.md).
  int kv_cache_mib = 256;
  bool prefix_cache = true;    // prompts starting with cached tokens read their KV instead of computing it
  int step_token_budget = 32;  // tokens per step while streams decode (bounds their token gaps)
  std::string device = "cpu";  // cpu | cuda | auto (docs/engine.md, "CUDA backend")
  bool operator==(const local_model_config&) const = default;  // (a reload keeps an engine whose entry is equal)
};

// Retries of one model's failed attempts (connect failures, resets and 5xx before any byte of an answer, 429),
// with jittered exponential backoff; a 429's Retry-After is honoured when it is at most max_backoff. Never after
// a stream has started. Remote kinds only.
struct retry_config {
  int max_retries = 2;  // attempts after the first; 0 = none
  std::chrono::milliseconds base{100};
  std::chrono::milliseconds max_backoff{2000};
};

// A circuit breaker per remote model: after `failures` failed attempts in a row, or when at least
// `failure_ratio` of the last `window` attempts failed, it opens for `open_for`, and requests fail fast (or go to
// the fallbacks); then one probe request is let through (half open).
struct breaker_config {
  int failures = 5;            // 0 = no consecutive-failure rule
  double failure_ratio = 0.0;  // 0 = no ratio rule; else in (0, 1]
  int window = 20;             // attempts the ratio is taken over (it applies once that many were seen)
  std::chrono::milliseconds open_for{30'000};
  bool enabled() const { return failures > 0 || failure_ratio > 0.0; }
};

// A system prompt shorter than this is never marked for Anthropic's prompt cache (~1024 tokens, the smallest
// prefix Claude models cache; a shorter mark would only be ignored).
constexpr size_t anthropic_cache_min_chars = 4096;

struct model_config {
  std::string name;  // what clients put in "model"
  model_kind kind = model_kind::openai;
  std::string base_url;        // e.g. https://api.openai.com/v1 (remote kinds)
  endpoint upstream;           // base_url, parsed (remote kinds)
  std::string tls_ca_file;     // extra CA certificates (PEM) trusted for an https base_url, besides the system's
  std::string upstream_model;  // model name sent upstream; defaults to name
  std::string api_key_env;     // env var holding the key; the key itself is never in the policy
  std::chrono::milliseconds timeout{0};  // 0 = server.request_timeout
  price_per_mtok price;
  local_model_config local;  // kind == local only
  std::string task_model_path;  // kind == task only: a task model file (sluice distill), resolved like gguf
  retry_config retries;         // remote kinds (local and task models never retry: max_retries 0)
  breaker_config breaker;       // remote kinds (failures 0 for the others)
  std::vector<std::string> fallbacks;  // models tried in order when this one fails (requests naming this model)
  // kind anthropic: mark a long system prompt (>= anthropic_cache_min_chars) for Anthropic's prompt cache.
  bool cache_system_prompt = false;
  int line = 0;              // where it was defined, for messages
};

// What a route does when its last tier fails after an earlier tier's answer was rejected.
enum class escalation_failure { error, serve_local };

// Skip the cheap tier when the request looks hard before anything is generated (either rule suffices).
struct pre_score_config {
  std::string classifier_path;  // a router model file (sluice train-router); "" = no classifier
  double skip_local_above = 1.0;  // classifier score above which the first tier is skipped
  int64_t max_prompt_chars = 0;   // prompts longer than this skip the first tier; 0 = no length rule
  bool enabled() const { return !classifier_path.empty() || max_prompt_chars > 0; }
};

// When an answer of a tier that is not the last may be served. Validators always apply; then the learned model
// (when `model_path` is set) or the mean log-prob rule (when set) decides; with neither, validators decide alone.
struct accept_config {
  std::string model_path;                 // an acceptance model file (sluice train-cascade); "" = none
  std::optional<double> threshold;        // overrides the model file's threshold
  std::optional<double> min_mean_logprob; // without a model: accept when the answer's mean token log-prob >= this
  std::vector<std::string> labels;        // the answer (trimmed, lower case) must be one of these
  std::string regex;                      // the trimmed answer must match (ECMAScript, whole answer); "" = none
  bool json_if_requested = true;          // a request asking for JSON output gets only answers that parse
};

// A tier run beside a route on a share of its traffic, to measure it before it is promoted into the tiers: its
// answer is compared with the one served, never sent.
struct shadow_config {
  std::string tier;    // a model of kind task; "" = no shadow
  double sample = 0.0; // share of the route's requests it sees, 0..1
};

struct route_config {
  std::string name;                // what clients put in "model"
  std::vector<std::string> tiers;  // model names, cheapest first
  std::string baseline;            // the model savings are measured against (default: the last tier)
  pre_score_config pre_score;
  accept_config accept;
  int local_max_tokens = 512;      // output cap of an attempt that is judged before it is served (buffered)
  std::chrono::milliseconds tier_timeout{0};  // per attempt; 0 = the tier model's timeout_ms / request timeout
  std::chrono::milliseconds timeout{0};       // the whole request; 0 = server.request_timeout
  escalation_failure on_escalation_failure = escalation_failure::error;
  bool log_text = false;           // the decision log keeps the prompt and answer text
  shadow_config shadow;
  int line = 0;
};

struct decision_log_config {
  std::string path;  // "" = no decision log
  uint64_t max_bytes = 100ull << 20;  // rotate past this size
  int keep = 5;                       // rotated files kept (path.1 .. path.N)
  log_level level = log_level::info;  // access_log only: lines kept (info: every request; warn: 4xx and worse)
};

// Money in the accounting of budgets: integer nano-dollars (1e-9 USD), so that sums are exact and the same in
// every replica (Redis counts them with INCRBY).
using nano_usd = int64_t;
constexpr nano_usd nanos_per_usd = 1'000'000'000;

enum class budget_period { day, month, total };  // calendar day / month in UTC, or never reset

struct budget_config {
  nano_usd limit = 0;  // 0 = no budget
  budget_period per = budget_period::total;
  bool set() const { return limit > 0; }
};

// A caller of the gateway. The secret itself is never in the policy: only its SHA-256 (`sluice keys create`).
struct key_config {
  std::string name;                  // bounded label in metrics and logs; never the secret or its hash
  std::array<uint8_t, 32> sha256{};  // of the whole secret as sent ("sk-sluice-...")
  std::string team;                  // "" = none; else a team of the policy, whose budget applies too
  std::vector<std::string> allow;    // routes and models it may use; empty = all
  budget_config budget;
  int64_t requests_per_minute = 0;   // 0 = unlimited
  int64_t tokens_per_minute = 0;     // input + output tokens; 0 = unlimited
  // The output tokens reserved for a request that sets no max_tokens (the worst case must be bounded).
  int64_t reserve_max_tokens = 4096;
  bool admin = false;                // may read /metrics when the policy has admin keys
  int line = 0, column = 0;          // where it was defined (in keys_file when the policy names one)
};

struct team_config {
  std::string name;
  budget_config budget;
  int line = 0;
};

// Where budgets and rate limits are counted: this process's memory, or a Redis shared by every replica.
struct limits_state_config {
  bool redis = false;
  std::string redis_host;
  uint16_t redis_port = 6379;
  int redis_db = 0;
  std::string redis_password_env;   // env var holding the password (AUTH); "" = none
  std::chrono::milliseconds timeout{250};  // one Redis call, connect included
  bool fail_open = false;           // Redis unreachable: refuse with 503 (default) or serve without counting
  std::string key_prefix = "sluice:";
};

struct policy {
  std::string source;  // the file it was loaded from ("<string>" for tests)
  server_config server;
  std::vector<model_config> models;
  std::vector<route_config> routes;
  decision_log_config decision_log;
  decision_log_config access_log;  // one JSON line per request; path "" = none, "-" = standard error
  std::vector<key_config> keys;    // empty = an open gateway: no key asked (and a warning beyond loopback)
  std::vector<team_config> teams;
  limits_state_config limits_state;
  std::string keys_file;           // where keys and teams were read from, when not inline ("" = inline)

  bool requires_keys() const { return !keys.empty(); }
  bool has_admin_keys() const;
  const team_config* find_team(std::string_view name) const;  // nullptr when absent

  const model_config* find_model(std::string_view name) const;  // nullptr when absent
  const route_config* find_route(std::string_view name) const;  // nullptr when absent
  std::vector<std::string> model_names() const;                  // in policy order (e.g. for metric labels)
  std::vector<std::string> route_names() const;
};

// One problem found while loading; every problem in a file is reported, not just the first.
struct load_error {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
  std::string message;
  std::string to_string() const;  // "file:line:column: error: message"
};

using load_result = boost::system::result<std::shared_ptr<const policy>, std::vector<load_error>>;

// Both return the validated policy or every error found (never throw; see docs/policy.md for the schema).
// Relative gguf paths resolve against the policy file's folder; for load_policy_string, against the folder of
// `source_name` when it names a file, else (names like "<string>") they stay relative to the working directory.
load_result load_policy_file(const std::string& path, const server_overrides& overrides = {});
load_result load_policy_string(std::string_view yaml, std::string_view source_name = "<string>",
                               const server_overrides& overrides = {});

// Names of the models whose api_key_env variable is unset or empty in this process's environment. The loader
// never reads secrets (`sluice validate` works without them); the gateway calls this at serve time to warn.
std::vector<std::string> missing_api_keys(const policy& p);

// Names of the local models whose gguf file does not exist (checked at serve/validate time, not at load).
std::vector<std::string> missing_model_files(const policy& p);

const char* to_string(model_kind k);  // "openai", "anthropic", "local", "task"

// Lets boost::system::result<T, std::vector<load_error>>::value() throw when misused; callers check has_value().
[[noreturn]] void throw_exception_from_error(const std::vector<load_error>& e, const boost::source_location& loc);

}  // namespace sluice::policies
