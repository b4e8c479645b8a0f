// The policy data model: an immutable, validated view of the YAML, shared by reference
// (std::shared_ptr<const policy>) and swapped atomically on reload. The hot path reads only these structs,
// never YAML. What must not go in here: yaml-cpp types, HTTP, routing logic.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/system/result.hpp>

namespace sluice::policies {

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
};

enum class model_kind { openai, anthropic, local };

// USD per million tokens. cached_input defaults to input when the YAML leaves it out.
struct price_per_mtok {
  double input_usd = 0.0;
  double cached_input_usd = 0.0;
  double cache_write_usd = 0.0;  // Anthropic cache writes; defaults to 1.25 x input for kind anthropic
  double output_usd = 0.0;
};

struct local_model_config {
  std::string gguf_path;      // resolved relative to the policy file's folder
  std::string chat_template;  // "" = detect from the GGUF; else "chatml" or "llama3"
  int threads = 0;            // compute threads; 0 = one per core
  int context_tokens = 2048;  // per-sequence context length
  int max_sequences = 8;      // sequences decoded together (continuous batching)
};

struct model_config {
  std::string name;  // what clients put in "model"
  model_kind kind = model_kind::openai;
  std::string base_url;        // e.g. https://api.openai.com/v1 (remote kinds)
  std::string upstream_model;  // model name sent upstream; defaults to name
  std::string api_key_env;     // env var holding the key; the key itself is never in the policy
  std::chrono::milliseconds timeout{0};  // 0 = server.request_timeout
  price_per_mtok price;
  local_model_config local;  // kind == local only
  int line = 0;              // where it was defined, for messages
};

struct policy {
  std::string source;  // the file it was loaded from ("<string>" for tests)
  server_config server;
  std::vector<model_config> models;

  const model_config* find_model(std::string_view name) const;
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

load_result load_policy_file(const std::string& path);
load_result load_policy_string(std::string_view yaml, std::string_view source_name = "<string>");

[[noreturn]] void throw_exception_from_error(const std::vector<load_error>& e, const boost::source_location& loc);

}  // namespace sluice::policies
