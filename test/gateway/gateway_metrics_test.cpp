// Tests for the gateway's metric declarations: bounded labels, what record_request adds, and that the real
// exposition passes `promtool check metrics` (promtool is installed by scripts/setup.sh; its absence fails).
#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "ops/gateway_metrics.h"

using namespace sluice::gateway;

namespace {

const std::vector<std::string> policy_models = {"smollm2", "gpt-4o-mini"};

bool contains_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

request_record sample_request() {
  request_record r;
  r.model = "gpt-4o-mini";
  r.http_status = 200;
  r.tokens_input = 1000;  // 600 uncached + 300 cache read + 100 cache write
  r.tokens_cache_read = 300;
  r.tokens_cache_write = 100;
  r.tokens_output = 11;
  r.cost_usd = 0.0003;
  r.baseline_cost_usd = 0.003;
  r.duration_s = 1.5;
  r.ttft_s = 0.5;
  r.overhead_s = 0.00004;
  return r;
}

struct command_result {
  int status;
  std::string output;
};

command_result run(const std::string& command) {
  command_result result{-1, ""};
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buffer;
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe)) result.output.append(buffer.data(), n);
  result.status = ::pclose(pipe);
  return result;
}

}  // namespace

TEST_CASE("the model label only takes policy names or 'unknown'", "[gateway_metrics]") {
  gateway_metrics m(policy_models, {}, "1.2.3");
  CHECK(m.model_label("smollm2") == "smollm2");
  CHECK(m.model_label("gpt-4o-mini") == "gpt-4o-mini");
  CHECK(m.model_label("gpt-4o-mini-2024") == "unknown");
  CHECK(m.model_label("") == "unknown");
  request_record r = sample_request();
  r.model = "client-invented-model\"}";
  r.http_status = 404;
  m.record_request(r);
  m.record_upstream_error("attacker/model", upstream_error_reason::timeout);
  const std::string text = m.expose();
  CHECK(contains_line(text, R"(sluice_requests_total{model="unknown",status="404"} 1)"));
  CHECK(contains_line(text, R"(sluice_upstream_errors_total{model="unknown",reason="timeout"} 1)"));
  CHECK(text.find("client-invented") == std::string::npos);
  CHECK(text.find("attacker") == std::string::npos);

  const std::vector<std::string> reloaded = {"new-model"};
  m.set_model_names(reloaded);
  CHECK(m.model_label("new-model") == "new-model");
  CHECK(m.model_label("smollm2") == "unknown");
}

TEST_CASE("record_request adds requests, tokens by type, cost and latencies", "[gateway_metrics]") {
  gateway_metrics m(policy_models, {}, "1.2.3");
  m.record_request(sample_request());
  m.record_request(sample_request());
  request_record local;
  local.model = "smollm2";
  local.http_status = 200;
  local.tokens_input = 20;
  local.tokens_output = 1;
  local.duration_s = 0.02;
  local.overhead_s = 0.00002;
  m.record_request(local);
  m.connection_opened();
  m.connection_opened();
  m.connection_closed();

  const std::string text = m.expose();
  INFO(text);
  CHECK(contains_line(text, R"(sluice_requests_total{model="gpt-4o-mini",status="200"} 2)"));
  CHECK(contains_line(text, R"(sluice_requests_total{model="smollm2",status="200"} 1)"));
  CHECK(contains_line(text, R"(sluice_tokens_total{model="gpt-4o-mini",type="input"} 1200)"));
  CHECK(contains_line(text, R"(sluice_tokens_total{model="gpt-4o-mini",type="cached_input"} 600)"));
  CHECK(contains_line(text, R"(sluice_tokens_total{model="gpt-4o-mini",type="cache_write"} 200)"));
  CHECK(contains_line(text, R"(sluice_tokens_total{model="gpt-4o-mini",type="output"} 22)"));
  CHECK(contains_line(text, R"(sluice_tokens_total{model="smollm2",type="input"} 20)"));
  CHECK(text.find(R"(sluice_tokens_total{model="smollm2",type="cached_input"})") == std::string::npos);
  CHECK(contains_line(text, R"(sluice_cost_usd_total{model="gpt-4o-mini"} 0.0006)"));
  CHECK(contains_line(text, R"(sluice_baseline_cost_usd_total{model="gpt-4o-mini"} 0.006)"));
  CHECK(contains_line(text, R"(sluice_request_duration_seconds_bucket{model="gpt-4o-mini",le="1"} 0)"));
  CHECK(contains_line(text, R"(sluice_request_duration_seconds_bucket{model="gpt-4o-mini",le="2.5"} 2)"));
  CHECK(contains_line(text, R"(sluice_request_duration_seconds_count{model="smollm2"} 1)"));
  CHECK(contains_line(text, R"(sluice_time_to_first_token_seconds_count{model="gpt-4o-mini"} 2)"));
  CHECK(text.find(R"(sluice_time_to_first_token_seconds_count{model="smollm2"})") == std::string::npos);
  // (1.5 - 0.5) s over 10 tokens after the first = 0.1 s per token.
  CHECK(contains_line(text, R"(sluice_time_per_output_token_seconds_bucket{model="gpt-4o-mini",le="0.05"} 0)"));
  CHECK(contains_line(text, R"(sluice_time_per_output_token_seconds_bucket{model="gpt-4o-mini",le="0.1"} 2)"));
  CHECK(contains_line(text, R"(sluice_gateway_overhead_seconds_bucket{model="gpt-4o-mini",le="1e-05"} 0)"));
  CHECK(contains_line(text, R"(sluice_gateway_overhead_seconds_bucket{model="gpt-4o-mini",le="5e-05"} 2)"));
  CHECK(contains_line(text, R"(sluice_gateway_overhead_seconds_bucket{model="smollm2",le="2.5e-05"} 1)"));
  CHECK(contains_line(text, R"(sluice_build_info{version="1.2.3"} 1)"));
  CHECK(contains_line(text, "sluice_connections_open 1"));
  CHECK(contains_line(text, "sluice_requests_in_flight 0"));
}

TEST_CASE("the gateway's real exposition passes promtool check metrics", "[gateway_metrics][promtool]") {
  const command_result which = run("command -v promtool");
  INFO("promtool is required for this test; scripts/setup.sh installs it (Debian package 'prometheus')");
  REQUIRE(which.status == 0);

  gateway_metrics m(policy_models);
  m.record_request(sample_request());
  request_record failed = sample_request();
  failed.http_status = 502;
  failed.ttft_s.reset();
  m.record_request(failed);
  m.record_upstream_error("gpt-4o-mini", upstream_error_reason::stream_cut);
  m.record_upstream_error("gpt-4o-mini", upstream_error_reason::auth);
  m.connection_opened();

  const auto path = std::filesystem::temp_directory_path() / ("sluice_metrics_" + std::to_string(::getpid()) + ".prom");
  {
    std::ofstream out(path);
    out << m.expose();
  }
  const command_result check = run("promtool check metrics < '" + path.string() + "'");
  std::filesystem::remove(path);
  INFO(check.output);
  CHECK(check.status == 0);
  CHECK(check.output.find("error") == std::string::npos);
}
