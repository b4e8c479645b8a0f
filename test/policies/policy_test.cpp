// Tests for policies/: loading YAML into the typed policy, defaults, every error kind with its exact
// line:column, the secrets rule, and the shipped default.yaml.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "sluice/policies/policy.h"

using namespace sluice::policies;

namespace {

// Loads `yaml` expecting failure; returns every error as "line:column: message".
std::vector<std::string> errors_of(std::string_view yaml) {
  auto r = load_policy_string(yaml);
  REQUIRE_FALSE(r.has_value());
  std::vector<std::string> out;
  for (const load_error& e : r.error()) {
    out.push_back(std::to_string(e.line) + ":" + std::to_string(e.column) + ": " + e.message);
  }
  return out;
}

std::shared_ptr<const policy> load_ok(std::string_view yaml, std::string_view source = "<string>") {
  auto r = load_policy_string(yaml, source);
  if (!r.has_value()) {
    for (const load_error& e : r.error()) UNSCOPED_INFO(e.to_string());
  }
  REQUIRE(r.has_value());
  return *r;
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

constexpr std::string_view minimal = "models:\n  m:\n    kind: local\n    gguf: /models/m.gguf\n";

}  // namespace

TEST_CASE("a full policy loads into typed config", "[policy]") {
  auto p = load_ok(R"(server:
  listen: 0.0.0.0
  port: 9090
  threads: 4
  max_body_bytes: 512KiB
  header_timeout_ms: 1000
  body_timeout_ms: 2000
  idle_timeout_ms: 3000
  request_timeout_ms: 4000
  max_connections: 50
models:
  frontier:
    kind: openai
    base_url: https://api.openai.com/v1/
    model: gpt-4o
    api_key_env: OPENAI_API_KEY
    timeout_ms: 30000
    cost_per_mtok: {input: 2.5, cached_input: 1.25, cache_write: 3, output: 10}
  claude:
    kind: anthropic
    base_url: http://[::1]:8443/anthropic
    cost_per_mtok: {input: 3, output: 15}
  tiny:
    kind: local
    gguf: /srv/tiny.gguf
    chat_template: llama3
    threads: 2
    context_tokens: 4096
    max_sequences: 16
)");
  CHECK(p->server.listen_address == "0.0.0.0");
  CHECK(p->server.port == 9090);
  CHECK(p->server.threads == 4);
  CHECK(p->server.max_body_bytes == 512 * 1024);
  CHECK(p->server.header_timeout.count() == 1000);
  CHECK(p->server.body_timeout.count() == 2000);
  CHECK(p->server.idle_timeout.count() == 3000);
  CHECK(p->server.request_timeout.count() == 4000);
  CHECK(p->server.max_connections == 50);
  REQUIRE(p->models.size() == 3);
  CHECK(p->model_names() == std::vector<std::string>{"frontier", "claude", "tiny"});

  const model_config* f = p->find_model("frontier");
  REQUIRE(f);
  CHECK(f->kind == model_kind::openai);
  CHECK(f->base_url == "https://api.openai.com/v1");
  CHECK(f->upstream.tls);
  CHECK(f->upstream.host == "api.openai.com");
  CHECK(f->upstream.port == 443);
  CHECK(f->upstream.base_path == "/v1");
  CHECK(f->upstream_model == "gpt-4o");
  CHECK(f->api_key_env == "OPENAI_API_KEY");
  CHECK(f->timeout.count() == 30000);
  CHECK(f->price.input_usd == 2.5);
  CHECK(f->price.cached_input_usd == 1.25);
  CHECK(f->price.cache_write_usd == 3.0);
  CHECK(f->price.output_usd == 10.0);
  CHECK(f->line == 12);

  const model_config* c = p->find_model("claude");
  REQUIRE(c);
  CHECK_FALSE(c->upstream.tls);
  CHECK(c->upstream.host == "::1");
  CHECK(c->upstream.port == 8443);
  CHECK(c->upstream.base_path == "/anthropic");
  CHECK(c->upstream_model == "claude");           // defaults to the name
  CHECK(c->price.cached_input_usd == 3.0);        // defaults to input
  CHECK(c->price.cache_write_usd == Approx(3.75));  // anthropic: 1.25 x input

  const model_config* t = p->find_model("tiny");
  REQUIRE(t);
  CHECK(t->kind == model_kind::local);
  CHECK(t->local.gguf_path == "/srv/tiny.gguf");
  CHECK(t->local.chat_template == "llama3");
  CHECK(t->local.threads == 2);
  CHECK(t->local.context_tokens == 4096);
  CHECK(t->local.max_sequences == 16);
  CHECK(p->find_model("nope") == nullptr);
}

TEST_CASE("a local model's device is cpu, cuda or auto", "[policy]") {
  auto p = load_ok(std::string(minimal) + "    device: auto\n");
  CHECK(p->find_model("m")->local.device == "auto");
  CHECK(load_ok(std::string(minimal))->find_model("m")->local.device == "cpu");
  auto e = errors_of(std::string(minimal) + "    device: tpu\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0].find("'device' must be cpu, cuda or auto, got 'tpu'") != std::string::npos);
}

TEST_CASE("defaults fill everything the YAML leaves out", "[policy]") {
  auto p = load_ok(std::string(minimal) + "  o:\n    kind: openai\n    base_url: http://localhost\n"
                                          "    cost_per_mtok: {input: 0.4}\n");
  const server_config defaults;
  CHECK(p->server.listen_address == "127.0.0.1");
  CHECK(p->server.port == 8080);
  CHECK(p->server.threads == 0);
  CHECK(p->server.max_body_bytes == 4u * 1024 * 1024);
  CHECK(p->server.header_timeout == defaults.header_timeout);
  CHECK(p->server.request_timeout == defaults.request_timeout);
  const model_config* m = p->find_model("m");
  REQUIRE(m);
  CHECK(m->local.chat_template.empty());
  CHECK(m->local.context_tokens == 2048);
  CHECK(m->local.max_sequences == 8);
  CHECK(m->local.kv_cache_mib == 256);
  CHECK(m->local.prefix_cache);
  CHECK(m->local.step_token_budget == 32);
  CHECK(m->timeout.count() == 0);
  CHECK(m->price.input_usd == 0.0);
  CHECK(m->price.output_usd == 0.0);
  const model_config* o = p->find_model("o");
  REQUIRE(o);
  CHECK(o->upstream_model == "o");
  CHECK(o->upstream.port == 80);
  CHECK(o->upstream.base_path.empty());
  CHECK(o->api_key_env.empty());
  CHECK(o->price.cached_input_usd == 0.4);
  CHECK(o->price.cache_write_usd == 0.4);  // no surcharge outside anthropic
  CHECK(o->price.output_usd == 0.0);
}

TEST_CASE("max_body_bytes accepts plain numbers and sizes with units", "[policy]") {
  auto size_of = [](std::string_view v) {
    return load_ok("server: {max_body_bytes: " + std::string(v) + "}\n" + std::string(minimal))->server.max_body_bytes;
  };
  CHECK(size_of("1000") == 1000);
  CHECK(size_of("4MiB") == 4u << 20);
  CHECK(size_of("\"512 KiB\"") == 512u << 10);
  CHECK(size_of("1GiB") == 1u << 30);
  CHECK(size_of("2MB") == 2'000'000);
  CHECK(size_of("10B") == 10);
  for (std::string_view bad : {"0", "4Mb", "-1", "4 MiBs", "abc", "1.5MiB", "99999999999999999999"}) {
    INFO(bad);
    auto e = errors_of("server:\n  max_body_bytes: " + std::string(bad) + "\n" + std::string(minimal));
    REQUIRE(e.size() == 1);
    CHECK(starts_with(e[0], "2:19: 'max_body_bytes' must be a positive size"));
  }
}

TEST_CASE("an unknown key names the valid keys, suggests the typo's fix, and points at the key", "[policy]") {
  auto e = errors_of("models:\n  x:\n    kind: openai\n    base_url: https://a.example/v1\n    timout_ms: 5\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:5: unknown key 'timout_ms' in model 'x'; did you mean 'timeout_ms'? valid keys: kind, base_url, "
                "model, api_key_env, timeout_ms, cost_per_mtok, tls_ca_file, cost_per_request, retries, circuit_breaker, "
                "fallbacks");

  e = errors_of("server:\n  prot: 1\n" + std::string(minimal));
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "2:3: unknown key 'prot' in server; did you mean 'port'? valid keys: listen, port, "));

  e = errors_of(std::string(minimal) + "rutes: {}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:1: unknown key 'rutes' in the policy (top level); did you mean 'routes'? valid keys: server, "
                "models, routes, decision_log, keys, teams, keys_file, limits_state, access_log");

  e = errors_of(std::string(minimal) + "    cost_per_mtok: {input: 1, outptu: 2}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:31: unknown key 'outptu' in cost_per_mtok of model 'm'; did you mean 'output'? valid keys: input, "
                "cached_input, cache_write, output");
}

TEST_CASE("keys of another kind are rejected", "[policy]") {
  auto e = errors_of("models:\n  x:\n    kind: openai\n    base_url: https://a.example\n    gguf: m.gguf\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:5: key 'gguf' does not apply to model 'x' of kind 'openai'; valid keys: kind, base_url, model, "
                "api_key_env, timeout_ms, cost_per_mtok, tls_ca_file, cost_per_request, retries, circuit_breaker, fallbacks");
  e = errors_of("models:\n  x:\n    kind: local\n    gguf: m.gguf\n    base_url: https://a.example\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:5: key 'base_url' does not apply to model 'x' of kind 'local'; valid keys: kind, gguf,"));
}

TEST_CASE("cache_system_prompt is an anthropic model's switch", "[policy]") {
  auto p = load_ok("models:\n  c:\n    kind: anthropic\n    base_url: https://a.example/v1\n    cache_system_prompt: true\n"
                   "  d:\n    kind: anthropic\n    base_url: https://a.example/v1\n");
  CHECK(p->find_model("c")->cache_system_prompt);
  CHECK_FALSE(p->find_model("d")->cache_system_prompt);
  auto e = errors_of("models:\n  x:\n    kind: openai\n    base_url: https://a.example\n    cache_system_prompt: true\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:5: key 'cache_system_prompt' does not apply to model 'x' of kind 'openai'"));
  e = errors_of("models:\n  x:\n    kind: anthropic\n    base_url: https://a.example\n    cache_system_prompt: often\n");
  REQUIRE(e.size() == 1);
}

TEST_CASE("wrong types and out-of-range values point at the value", "[policy]") {
  auto e = errors_of("server:\n  port: 70000\n  threads: many\n  listen: [a]\n" + std::string(minimal));
  REQUIRE(e.size() == 3);
  CHECK(e[0] == "2:9: 'port' must be between 0 and 65535, got '70000'");
  CHECK(e[1] == "3:12: 'threads' must be an integer between 0 and 1024, got 'many'");
  CHECK(e[2] == "4:11: 'listen' must be a string, got a list");

  e = errors_of("server:\n  listen: localhost\n  header_timeout_ms:\n" + std::string(minimal));
  REQUIRE(e.size() == 2);
  CHECK(e[0] == "2:11: 'listen' must be an IP address such as 127.0.0.1, 0.0.0.0 or ::1, got 'localhost'");
  CHECK(e[1] == "3:3: 'header_timeout_ms' must be an integer between 1 and 86400000, got nothing");

  e = errors_of("models:\n  x:\n    kind: gpt\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "3:11: 'kind' must be one of openai, anthropic, local, task, got 'gpt'");

  e = errors_of("models:\n  x:\n    kind: local\n    gguf: a.gguf\n    chat_template: alpaca\n"
                "    cost_per_mtok: {input: -1, output: x}\n");
  REQUIRE(e.size() == 3);
  CHECK(starts_with(e[0], "5:20: 'chat_template' must be one of chatml, llama3"));
  CHECK(e[1] == "6:28: 'input' must be a non-negative number, got '-1'");
  CHECK(e[2] == "6:40: 'output' must be a non-negative number, got 'x'");

  e = errors_of("models: [a, b]\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "1:9: models must be a map, got a list");

  e = errors_of("models:\n  x: 3\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "2:6: model 'x' must be a map, got a scalar");
}

TEST_CASE("missing required keys are reported at the model", "[policy]") {
  auto e = errors_of("models:\n  a:\n    base_url: http://h\n  b:\n    kind: anthropic\n  c:\n    kind: local\n");
  REQUIRE(e.size() == 3);
  CHECK(starts_with(e[0], "2:3: model 'a' has no 'kind'"));
  CHECK(e[1] == "4:3: model 'b' of kind 'anthropic' needs a 'base_url' (e.g. https://api.anthropic.com/v1)");
  CHECK(e[2] == "6:3: model 'c' of kind 'local' needs a 'gguf' path");
  e = errors_of("server: {port: 1}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "0:0: the policy has no 'models' section; define at least one model");
  e = errors_of("models: {}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "1:9: 'models' is empty; define at least one model");
  e = errors_of("");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "0:0: the policy is empty"));
}

TEST_CASE("base_url is validated: scheme, host, port, no credentials", "[policy]") {
  auto error_for = [](std::string_view url) {
    auto e = errors_of("models:\n  x:\n    kind: openai\n    base_url: " + std::string(url) + "\n");
    REQUIRE(e.size() == 1);
    CHECK(starts_with(e[0], "4:15: "));
    return e[0].substr(6);
  };
  CHECK(error_for("ftp://h/v1") == "base_url scheme must be http or https");
  CHECK(error_for("api.openai.com/v1") == "base_url must start with http:// or https://");
  CHECK(error_for("https:///v1") == "base_url has no host");
  CHECK(error_for("https://h:0/v1") == "base_url port must be a number between 1 and 65535");
  CHECK(error_for("https://h:99999") == "base_url port must be a number between 1 and 65535");
  CHECK(error_for("https://h:/v1") == "base_url has an empty port");
  CHECK(error_for("https://bad host") == "base_url must not contain spaces or control characters");
  CHECK(error_for("https://h/v1?key=sk-secret") == "base_url must not have a query string or fragment");
  const std::string creds = error_for("https://user:sk-secret@h/v1");
  CHECK(starts_with(creds, "base_url must not contain credentials"));
  CHECK(creds.find("sk-secret") == std::string::npos);
}

TEST_CASE("secrets never live in the policy", "[policy][secrets]") {
  auto e = errors_of("models:\n  x:\n    kind: openai\n    base_url: https://h\n    api_key: sk-abc123\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:5: 'api_key' in model 'x' is not allowed: a policy never holds secrets. Put the key in an "
                "environment variable and name it with 'api_key_env: VARIABLE_NAME'");
  CHECK(e[0].find("sk-abc123") == std::string::npos);

  // A key pasted into api_key_env is rejected without being echoed.
  e = errors_of("models:\n  x:\n    kind: openai\n    base_url: https://h\n    api_key_env: sk-proj-abc123\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:18: 'api_key_env' must be the NAME of an environment variable"));
  CHECK(e[0].find("abc123") == std::string::npos);

  // The loader never needs the secret itself; missing_api_keys reports unset (or empty) variables at serve time.
  ::unsetenv("SLUICE_TEST_UNSET_KEY");
  ::setenv("SLUICE_TEST_SET_KEY", "sk-test", 1);
  ::setenv("SLUICE_TEST_EMPTY_KEY", "", 1);
  auto p = load_ok("models:\n"
                   "  a: {kind: openai, base_url: https://h, api_key_env: SLUICE_TEST_UNSET_KEY}\n"
                   "  b: {kind: openai, base_url: https://h, api_key_env: SLUICE_TEST_SET_KEY}\n"
                   "  c: {kind: anthropic, base_url: https://h, api_key_env: SLUICE_TEST_EMPTY_KEY}\n"
                   "  d: {kind: openai, base_url: http://localhost:8000}\n");
  CHECK(missing_api_keys(*p) == std::vector<std::string>{"a", "c"});
}

TEST_CASE("duplicate keys and bad model names are errors", "[policy]") {
  auto e = errors_of("server:\n  port: 1\n  port: 2\n" + std::string(minimal) + "  m:\n    kind: local\n");
  REQUIRE(e.size() == 2);
  CHECK(e[0] == "3:3: duplicate key 'port' in server (first defined at line 2)");
  CHECK(e[1] == "8:3: duplicate key 'm' in models (first defined at line 5)");

  e = errors_of("models:\n  \"bad name\":\n    kind: local\n    gguf: a.gguf\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "2:3: invalid model name 'bad name'"));
  CHECK(load_ok("models:\n  org/model-1.5:q4_k:\n    kind: local\n    gguf: a.gguf\n")->find_model("org/model-1.5:q4_k"));
}

TEST_CASE("broken YAML reports yaml-cpp's position", "[policy]") {
  auto e = errors_of("models:\n  x: [1, 2\n  y: 3\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "3:4: invalid YAML: "));
  e = errors_of("server:\n  port: 1\n   threads: 2\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "3:11: invalid YAML: "));
  e = errors_of(std::string(minimal) + "---\nmodels: {}\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:1: a policy file holds one YAML document"));  // at the second "---"
  // yaml-cpp 0.7's LoadAll loops forever (allocating) on a stray ',' at the start of a document.
  e = errors_of(",models:\n  m: {kind: local, gguf: a.gguf}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "1:1: invalid YAML: unexpected ',' at the start of a document");
  e = errors_of("# comment\n---\n  ,\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "3:3: invalid YAML: unexpected ',' at the start of a document");
}

TEST_CASE("every error in a file is reported, in document order, with the file name", "[policy]") {
  auto r = load_policy_string("server:\n  port: -1\n  idle_timeout_ms: 0\nmodels:\n  x:\n    kind: openai\n"
                              "    base_url: https://h\n    api_key_env: lower_case\n    extra: 1\n"
                              "  y:\n    kind: local\n    gguf: a.gguf\n    max_sequences: 0\nbogus: 1\n",
                              "/etc/sluice/p.yaml");
  REQUIRE_FALSE(r.has_value());
  const auto& errors = r.error();
  REQUIRE(errors.size() == 6);
  CHECK(errors[0].to_string() == "/etc/sluice/p.yaml:2:9: error: 'port' must be between 0 and 65535, got '-1'");
  CHECK(errors[1].line == 3);
  CHECK(errors[2].line == 8);
  CHECK(errors[3].line == 9);
  CHECK(errors[4].line == 13);
  CHECK(errors[5].line == 14);
  for (const load_error& e : errors) CHECK(e.file == "/etc/sluice/p.yaml");
  CHECK(load_error{"f", 0, 0, "m"}.to_string() == "f: error: m");
}

TEST_CASE("relative gguf paths resolve against the policy file's folder", "[policy]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sluice_policy_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "conf");
  const auto file = dir / "conf" / "p.yaml";
  {
    std::ofstream out(file);
    out << "models:\n  a: {kind: local, gguf: ../models/a.gguf}\n  b: {kind: local, gguf: b.gguf}\n"
           "  c: {kind: local, gguf: /abs/c.gguf}\n";
  }
  auto r = load_policy_file(file.string());
  REQUIRE(r.has_value());
  const auto& p = **r;
  CHECK(p.source == file.string());
  CHECK(p.find_model("a")->local.gguf_path == (dir / "models" / "a.gguf").string());
  CHECK(p.find_model("b")->local.gguf_path == (dir / "conf" / "b.gguf").string());
  CHECK(p.find_model("c")->local.gguf_path == "/abs/c.gguf");
  CHECK(missing_model_files(p) == std::vector<std::string>{"a", "b", "c"});
  std::filesystem::create_directories(dir / "models");
  std::ofstream(dir / "models" / "a.gguf") << "x";
  CHECK(missing_model_files(p) == std::vector<std::string>{"b", "c"});

  auto missing = load_policy_file((dir / "nope.yaml").string());
  REQUIRE_FALSE(missing.has_value());
  CHECK(starts_with(missing.error().at(0).to_string(), (dir / "nope.yaml").string() + ": error: cannot read"));
  auto directory = load_policy_file(dir.string());
  REQUIRE_FALSE(directory.has_value());
  std::filesystem::remove_all(dir);
}

TEST_CASE("the shipped default.yaml is valid", "[policy]") {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/policies/default.yaml";
  auto r = load_policy_file(path);
  if (!r.has_value()) {
    for (const load_error& e : r.error()) UNSCOPED_INFO(e.to_string());
  }
  REQUIRE(r.has_value());
  const policy& p = **r;
  CHECK(p.server.listen_address == "127.0.0.1");
  CHECK(p.server.port == 8080);
  const model_config* local = p.find_model("smollm2");
  REQUIRE(local);
  CHECK(local->kind == model_kind::local);
  CHECK(local->local.gguf_path ==
        (std::filesystem::path(SLUICE_SOURCE_DIR) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").lexically_normal().string());
  CHECK(local->price.input_usd == 0.0);
  const model_config* remote = p.find_model("gpt-4o-mini");
  REQUIRE(remote);
  CHECK(remote->api_key_env == "OPENAI_API_KEY");
  CHECK(remote->price.input_usd == 0.15);
  CHECK(remote->price.cached_input_usd == 0.075);
  CHECK(remote->price.output_usd == 0.60);
}

TEST_CASE("shutdown_grace_ms has a default and a range", "[policy]") {
  CHECK(load_ok(minimal)->server.shutdown_grace == std::chrono::milliseconds(10'000));
  auto p = load_ok(std::string("server: {shutdown_grace_ms: 0}\n") + std::string(minimal));
  CHECK(p->server.shutdown_grace == std::chrono::milliseconds(0));
  auto errs = errors_of(std::string("server: {shutdown_grace_ms: -1}\n") + std::string(minimal));
  REQUIRE(errs.size() == 1);
  CHECK(starts_with(errs[0], "1:29: "));
}

TEST_CASE("command-line overrides apply before the policy is frozen, checked like YAML values", "[policy]") {
  server_overrides o;
  o.port = 0;
  o.listen_address = "::1";
  o.shutdown_grace = std::chrono::milliseconds(1500);
  auto r = load_policy_string(std::string("server: {port: 9000, listen: 0.0.0.0}\n") + std::string(minimal),
                              "<string>", o);
  REQUIRE(r.has_value());
  const policy& p = **r;
  CHECK(p.server.port == 0);
  CHECK(p.server.listen_address == "::1");
  CHECK(p.server.shutdown_grace == std::chrono::milliseconds(1500));

  server_overrides bad;
  bad.listen_address = "localhost";
  auto e = load_policy_string(minimal, "<string>", bad);
  REQUIRE_FALSE(e.has_value());
  REQUIRE(e.error().size() == 1);
  CHECK(e.error()[0].message.find("--listen must be an IP address") != std::string::npos);
}

namespace {
constexpr std::string_view two_models =
    "models:\n"
    "  small: {kind: local, gguf: /m/small.gguf}\n"
    "  big: {kind: openai, base_url: https://api.example/v1, cost_per_mtok: {input: 10, output: 30}}\n";
}

TEST_CASE("routes load with their defaults and every key", "[policy][routes]") {
  auto p = load_ok(std::string(two_models) + R"(routes:
  plain:
    tiers: [small, big]
  full:
    tiers: [small, big]
    baseline: big
    pre_score: {classifier: router.bin, skip_local_above: 0.8, max_prompt_chars: 4000}
    accept:
      model: accept.bin
      threshold: 0.7
      labels: [up, down]
      regex: "^(up|down)$"
      json_if_requested: false
    local_max_tokens: 8
    tier_timeout_ms: 2000
    timeout_ms: 9000
    on_escalation_failure: serve_local
    log_text: true
decision_log: {path: logs/d.jsonl, max_bytes: 1MiB, keep: 2}
)", "/etc/sluice/p.yaml");
  REQUIRE(p->routes.size() == 2);
  const route_config& plain = *p->find_route("plain");
  CHECK(plain.tiers == std::vector<std::string>{"small", "big"});
  CHECK(plain.baseline == "big");  // the last tier by default
  CHECK_FALSE(plain.pre_score.enabled());
  CHECK(plain.accept.model_path.empty());
  CHECK(plain.accept.json_if_requested);
  CHECK(plain.local_max_tokens == 512);
  CHECK(plain.on_escalation_failure == escalation_failure::error);
  CHECK_FALSE(plain.log_text);
  const route_config& full = *p->find_route("full");
  CHECK(full.pre_score.classifier_path == "/etc/sluice/router.bin");
  CHECK(full.pre_score.skip_local_above == 0.8);
  CHECK(full.pre_score.max_prompt_chars == 4000);
  CHECK(full.accept.model_path == "/etc/sluice/accept.bin");
  CHECK(full.accept.threshold == 0.7);
  CHECK(full.accept.labels == std::vector<std::string>{"up", "down"});
  CHECK(full.accept.regex == "^(up|down)$");
  CHECK_FALSE(full.accept.json_if_requested);
  CHECK(full.local_max_tokens == 8);
  CHECK(full.tier_timeout == std::chrono::milliseconds(2000));
  CHECK(full.timeout == std::chrono::milliseconds(9000));
  CHECK(full.on_escalation_failure == escalation_failure::serve_local);
  CHECK(full.log_text);
  CHECK(p->decision_log.path == "/etc/sluice/logs/d.jsonl");
  CHECK(p->decision_log.max_bytes == 1u << 20);
  CHECK(p->decision_log.keep == 2);
  CHECK(p->route_names() == std::vector<std::string>{"plain", "full"});
  CHECK(p->find_route("small") == nullptr);
}

TEST_CASE("route errors name the route and the problem", "[policy][routes]") {
  auto e = errors_of(std::string(two_models) + "routes:\n  r:\n    tiers: [small, huge]\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:3: route 'r': tier 'huge' is not a model of this policy (models: small, big)");

  e = errors_of(std::string(two_models) + "routes:\n  big:\n    tiers: [small, big]\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:3: route 'big' has the name of a model; clients name either one, so names must differ");

  e = errors_of(std::string(two_models) + "routes:\n  r:\n    tiers: [small, small]\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:3: route 'r': tier 'small' is listed twice");

  e = errors_of(std::string(two_models) + "routes:\n  r:\n    baseline: big\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:3: route 'r' has no 'tiers'"));

  e = errors_of(std::string(two_models) + "routes:\n  r:\n    tiers: [small, big]\n    accept: {regex: \"(\"}\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "7:21: 'regex' is not a valid ECMAScript regular expression"));

  e = errors_of(std::string(two_models) +
                "routes:\n  r:\n    tiers: [small, big]\n    on_escalation_failure: retry\n    log_text: yes\n"
                "    accept: {threshold: 1.5, labels: []}\n");
  REQUIRE(e.size() == 4);
  CHECK(e[0] == "7:28: 'on_escalation_failure' must be error or serve_local, got 'retry'");
  CHECK(e[1] == "8:15: 'log_text' must be true or false, got 'yes'");
  CHECK(starts_with(e[2], "9:25: 'threshold' must be a number between 0 and 1"));
  CHECK(e[3] == "9:38: 'labels' must list at least one allowed answer");

  e = errors_of(std::string(two_models) + "routes:\n  r:\n    tiers: [big]\n    accept: {min_mean_logprob: -1}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "5:3: route 'r' has one tier: 'accept' rules and 'pre_score' need a tier to escalate to");

  e = errors_of(std::string(two_models) + "decision_log: {keep: 3}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0] == "4:1: 'decision_log' needs a 'path'");
}

TEST_CASE("task models and route shadows load and are checked", "[policy][routes]") {
  auto p = load_ok(R"(models:
  tagger: {kind: task, task_model: models/tagger.bin, cost_per_request: 0.00001}
  small: {kind: local, gguf: /m/small.gguf}
  big: {kind: openai, base_url: https://api.example/v1, cost_per_mtok: {input: 10, output: 30}}
routes:
  r:
    tiers: [tagger, small, big]
    shadow: {tier: tagger, sample: 0.25}
)", "/etc/sluice/p.yaml");
  const model_config& t = *p->find_model("tagger");
  CHECK(t.kind == model_kind::task);
  CHECK(t.task_model_path == "/etc/sluice/models/tagger.bin");
  CHECK(t.price.request_usd == 0.00001);
  CHECK(p->find_route("r")->shadow.tier == "tagger");
  CHECK(p->find_route("r")->shadow.sample == 0.25);

  auto e = errors_of("models:\n  t: {kind: task}\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "2:3: model 't' of kind 'task' needs a 'task_model' path"));
  e = errors_of("models:\n  t: {kind: task, task_model: x.bin, gguf: y.gguf}\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "2:38: key 'gguf' does not apply to model 't' of kind 'task'"));
  e = errors_of(std::string(two_models) + "routes:\n  r:\n    tiers: [small, big]\n    shadow: {tier: big, sample: 0.5}\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:3: route 'r': shadow tier 'big' must be of kind 'task'"));
  e = errors_of(std::string(two_models) + "routes:\n  r:\n    tiers: [small, big]\n    shadow: {sample: 2}\n");
  REQUIRE(e.size() == 2);
}

TEST_CASE("keys, teams and limits_state load into typed config", "[policy][keys]") {
  const std::string hash(64, 'a');
  auto p = load_ok(std::string(minimal) + "keys:\n  app:\n    sha256: sha256:" + hash +
                   "\n    team: t\n    allow: [m]\n    budget: {usd: 2.5, per: month}\n    requests_per_minute: 60\n"
                   "    tokens_per_minute: 1000\n    reserve_max_tokens: 256\n  ops:\n    sha256: " + std::string(64, 'B') +
                   "\n    admin: true\nteams:\n  t:\n    budget: {usd: 10, per: day}\nlimits_state:\n"
                   "  redis: redis://10.0.0.5:6380/2\n  password_env: REDIS_PW\n  timeout_ms: 40\n  on_error: fail_open\n"
                   "  key_prefix: \"gw:\"\n");
  REQUIRE(p->keys.size() == 2);
  const key_config& k = p->keys[0];
  CHECK(k.name == "app");
  CHECK(k.sha256[0] == 0xaa);
  CHECK(k.team == "t");
  CHECK(k.allow == std::vector<std::string>{"m"});
  CHECK(k.budget.limit == 2'500'000'000);
  CHECK(k.budget.per == budget_period::month);
  CHECK(k.requests_per_minute == 60);
  CHECK(k.tokens_per_minute == 1000);
  CHECK(k.reserve_max_tokens == 256);
  CHECK_FALSE(k.admin);
  CHECK(p->keys[1].admin);
  CHECK(p->keys[1].sha256[31] == 0xbb);
  CHECK(p->has_admin_keys());
  REQUIRE(p->find_team("t"));
  CHECK(p->find_team("t")->budget.limit == 10'000'000'000);
  CHECK(p->find_team("t")->budget.per == budget_period::day);
  CHECK(p->limits_state.redis);
  CHECK(p->limits_state.redis_host == "10.0.0.5");
  CHECK(p->limits_state.redis_port == 6380);
  CHECK(p->limits_state.redis_db == 2);
  CHECK(p->limits_state.redis_password_env == "REDIS_PW");
  CHECK(p->limits_state.timeout.count() == 40);
  CHECK(p->limits_state.fail_open);
  CHECK(p->limits_state.key_prefix == "gw:");

  auto open = load_ok(minimal);
  CHECK_FALSE(open->requires_keys());
  auto default_port = load_ok(std::string(minimal) + "keys:\n  a:\n    sha256: " + hash +
                              "\nlimits_state:\n  redis: redis://cache.internal\n");
  CHECK(default_port->limits_state.redis_port == 6379);
  CHECK(default_port->limits_state.redis_db == 0);
  CHECK_FALSE(default_port->limits_state.fail_open);
}

TEST_CASE("key errors point at the line and never need the secret", "[policy][keys]") {
  const std::string hash(64, 'c');
  auto e = errors_of(std::string(minimal) + "keys:\n  a:\n    sha256: " + hash + "\n  b:\n    sha256: " + hash +
                     "\n  bad name!:\n    sha256: " + std::string(63, 'd') + "\n");
  REQUIRE(e.size() == 3);
  CHECK(starts_with(e[0], "8:3: key 'b' has the same sha256 as key 'a'"));
  CHECK(starts_with(e[1], "10:3: invalid name 'bad name!' in keys"));
  CHECK(starts_with(e[2], "11:13: 'sha256' must be 64 hex digits"));

  e = errors_of(std::string(minimal) + "keys:\n  a:\n    team: x\n");
  REQUIRE(e.size() == 2);
  CHECK(e[0] == "6:3: key 'a' needs 'sha256' (sluice keys create)");
  CHECK(starts_with(e[1], "6:3: key 'a' names team 'x', which is not defined"));

  e = errors_of(std::string(minimal) + "limits_state:\n  redis: redis://h:1\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "6:3: limits_state is set but the policy has no keys"));

  e = errors_of(std::string(minimal) + "keys:\n  a:\n    sha256: " + hash +
                "\nlimits_state:\n  redis: http://h\n  on_error: ignore\n");
  REQUIRE(e.size() == 2);
  CHECK(starts_with(e[0], "9:10: 'redis' must be redis://host[:port][/db]"));
  CHECK(starts_with(e[1], "10:13: 'on_error' must be fail_closed"));

  e = errors_of(std::string(minimal) + "keys: {}\nkeys_file: k.yaml\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "6:1: keys_file replaces the 'keys' and 'teams' sections"));
}

TEST_CASE("keys_file holds keys and teams, resolved next to the policy", "[policy][keys]") {
  const auto dir = std::filesystem::temp_directory_path() / ("sluice-keys-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "keys.yaml") << "keys:\n  a:\n    sha256: " << std::string(64, 'e')
                                     << "\n    team: t\nteams:\n  t:\n    budget: {usd: 1}\n";
    std::ofstream(dir / "policy.yaml") << minimal << "keys_file: keys.yaml\n";
  }
  auto r = load_policy_file((dir / "policy.yaml").string());
  REQUIRE(r.has_value());
  CHECK((*r)->keys.size() == 1);
  CHECK((*r)->keys_file == (dir / "keys.yaml").string());
  CHECK((*r)->find_team("t")->budget.per == budget_period::total);
  {
    std::ofstream(dir / "keys.yaml") << "keys:\n  a:\n    sha256: " << std::string(64, 'e') << "\n    team: zz\n";
  }
  r = load_policy_file((dir / "policy.yaml").string());
  REQUIRE_FALSE(r.has_value());
  REQUIRE(r.error().size() == 1);
  CHECK(r.error()[0].file == (dir / "keys.yaml").string());
  CHECK(r.error()[0].line == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("retries, circuit_breaker and fallbacks load with defaults per kind", "[policy][resilience]") {
  auto p = load_ok(std::string(minimal) +
                   "  a:\n    kind: openai\n    base_url: http://h/v1\n    retries: {max: 4, base_ms: 50, max_ms: 900}\n"
                   "    circuit_breaker: {failures: 3, open_ms: 1500}\n    fallbacks: [b, m]\n"
                   "  b:\n    kind: openai\n    base_url: http://h/v1\n    retries: 0\n    circuit_breaker: off\n"
                   "  c:\n    kind: openai\n    base_url: http://h/v1\n");
  const auto* a = p->find_model("a");
  CHECK(a->retries.max_retries == 4);
  CHECK(a->retries.base.count() == 50);
  CHECK(a->retries.max_backoff.count() == 900);
  CHECK(a->breaker.failures == 3);
  CHECK(a->breaker.open_for.count() == 1500);
  CHECK(a->fallbacks == std::vector<std::string>{"b", "m"});
  CHECK(p->find_model("b")->retries.max_retries == 0);
  CHECK(p->find_model("b")->breaker.failures == 0);
  CHECK(p->find_model("c")->retries.max_retries == 2);  // defaults for remote models
  CHECK(p->find_model("c")->breaker.failures == 5);
  CHECK(p->find_model("m")->retries.max_retries == 0);  // a local model never retries
  CHECK(p->find_model("m")->breaker.failures == 0);

  auto e = errors_of(std::string(minimal) + "    fallbacks: [m, zz]\n");
  REQUIRE(e.size() == 2);
  CHECK(starts_with(e[0], "5:16: model 'm' lists itself in 'fallbacks'"));
  CHECK(starts_with(e[1], "5:16: model 'm' falls back to 'zz', which is not a model of the policy"));
  e = errors_of(std::string(minimal) + "  r:\n    kind: openai\n    base_url: http://h/v1\n    retries: 11\n"
                "    fallbacks: [m, m]\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "8:14: 'retries' must be between 0 and 10, got '11'"));
  e = errors_of(std::string(minimal) + "  r:\n    kind: openai\n    base_url: http://h/v1\n    fallbacks: [m, m]\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "8:16: model 'r' lists 'm' twice in 'fallbacks'"));
  e = errors_of(std::string(minimal) + "    retries: 1\n");
  REQUIRE(e.size() == 1);
  CHECK(starts_with(e[0], "5:5: key 'retries' does not apply to model 'm' of kind 'local'"));

  auto ratio = load_ok(std::string(minimal) + "  r:\n    kind: openai\n    base_url: http://h/v1\n"
                       "    circuit_breaker: {failures: 0, failure_ratio: 0.25, window: 40}\n");
  const auto& br = ratio->find_model("r")->breaker;
  CHECK(br.failures == 0);
  CHECK(br.failure_ratio == 0.25);
  CHECK(br.window == 40);
  CHECK(br.enabled());
  CHECK_FALSE(p->find_model("b")->breaker.enabled());
  e = errors_of(std::string(minimal) + "  r:\n    kind: openai\n    base_url: http://h/v1\n"
                "    circuit_breaker: {failure_ratio: 1.5, window: 1}\n");
  REQUIRE(e.size() == 2);
  CHECK(starts_with(e[0], "8:38: 'failure_ratio' must be a fraction in 0..1"));
  CHECK(e[1].find("'window' must be between 2 and 10000") != std::string::npos);
}

TEST_CASE("the local KV cache keys are read and checked", "[policy]") {
  auto p = load_ok(std::string(minimal) + "    kv_cache_mib: 64\n    prefix_cache: false\n    step_token_budget: 48\n");
  const model_config* m = p->find_model("m");
  REQUIRE(m);
  CHECK(m->local.kv_cache_mib == 64);
  CHECK_FALSE(m->local.prefix_cache);
  CHECK(m->local.step_token_budget == 48);
  auto e = errors_of(std::string(minimal) + "    kv_cache_mib: 0\n    prefix_cache: maybe\n    step_token_budget: 0\n");
  REQUIRE(e.size() == 3);
  CHECK(e[0].find("kv_cache_mib") != std::string::npos);
  CHECK(e[1].find("prefix_cache") != std::string::npos);
  CHECK(e[2].find("step_token_budget") != std::string::npos);
  // The old key is gone, with the valid ones named.
  auto old = errors_of(std::string(minimal) + "    prefix_cache_mib: 64\n");
  REQUIRE(old.size() == 1);
  CHECK(old[0].find("kv_cache_mib") != std::string::npos);
}
