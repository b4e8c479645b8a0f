// Tests for the metrics registry and its Prometheus text exposition: exact output, escaping, histogram
// buckets, and concurrent updates.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "ops/metrics.h"

using namespace sluice::gateway;

TEST_CASE("a tiny registry exposes exactly the text format", "[metrics]") {
  registry r;
  auto& requests = r.add_counter("demo_requests_total", "Requests served.", {"model", "status"});
  auto& temperature = r.add_gauge("demo_temperature_celsius", "Current temperature.");
  auto& latency = r.add_histogram("demo_latency_seconds", "Latency.", {"model"}, {0.1, 0.5, 1});
  requests.with({"b", "200"}).inc();
  requests.with({"a", "500"}).inc(2);
  requests.with({"b", "200"}).inc(0.5);
  temperature.with({}).set(-3.25);
  latency.with({"m"}).observe(0.05);
  latency.with({"m"}).observe(0.5);
  latency.with({"m"}).observe(7);
  CHECK(r.expose() ==
        "# HELP demo_requests_total Requests served.\n"
        "# TYPE demo_requests_total counter\n"
        "demo_requests_total{model=\"a\",status=\"500\"} 2\n"
        "demo_requests_total{model=\"b\",status=\"200\"} 1.5\n"
        "# HELP demo_temperature_celsius Current temperature.\n"
        "# TYPE demo_temperature_celsius gauge\n"
        "demo_temperature_celsius -3.25\n"
        "# HELP demo_latency_seconds Latency.\n"
        "# TYPE demo_latency_seconds histogram\n"
        "demo_latency_seconds_bucket{model=\"m\",le=\"0.1\"} 1\n"
        "demo_latency_seconds_bucket{model=\"m\",le=\"0.5\"} 2\n"
        "demo_latency_seconds_bucket{model=\"m\",le=\"1\"} 2\n"
        "demo_latency_seconds_bucket{model=\"m\",le=\"+Inf\"} 3\n"
        "demo_latency_seconds_sum{model=\"m\"} 7.55\n"
        "demo_latency_seconds_count{model=\"m\"} 3\n");
}

TEST_CASE("a labelled family with no children exposes only its header; an unlabelled one starts at 0", "[metrics]") {
  registry r;
  r.add_counter("x_total", "X.", {"model"});
  r.add_counter("y_total", "Y.");
  CHECK(r.expose() == "# HELP x_total X.\n# TYPE x_total counter\n# HELP y_total Y.\n# TYPE y_total counter\ny_total 0\n");
}

TEST_CASE("label values and help text are escaped", "[metrics]") {
  CHECK(escape_label_value(R"(a\b"c)" "\n" "d") == R"(a\\b\"c\nd)");
  CHECK(escape_help("line1\nback\\slash \"quotes\" stay") == R"(line1\nback\\slash "quotes" stay)");
  registry r;
  r.add_gauge("g", "Help with \\ and\nnewline.", {"path"}).with({"C:\\dir\n\"x\""}).set(1);
  CHECK(r.expose() ==
        "# HELP g Help with \\\\ and\\nnewline.\n"
        "# TYPE g gauge\n"
        "g{path=\"C:\\\\dir\\n\\\"x\\\"\"} 1\n");
}

TEST_CASE("values are formatted the way Prometheus parses them", "[metrics]") {
  CHECK(format_value(0) == "0");
  CHECK(format_value(42) == "42");
  CHECK(format_value(-7) == "-7");
  CHECK(format_value(0.25) == "0.25");
  CHECK(format_value(1e-5) == "1e-05");
  CHECK(format_value(0.0005) == "0.0005");
  CHECK(format_value(123456789012.5) == "1.234567890125e+11");
  CHECK(format_value(1e20) == "1e+20");
  CHECK(format_value(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(format_value(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(format_value(std::nan("")) == "NaN");
  const double third = 1.0 / 3.0;
  CHECK(std::stod(format_value(third)) == third);  // shortest form still round-trips
}

TEST_CASE("histogram buckets are cumulative and le is inclusive", "[metrics]") {
  const std::vector<double> bounds = {1, 2, 4};
  histogram h(bounds);
  for (double v : {0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 4.5, 100.0, -1.0}) h.observe(v);
  h.observe(std::nan(""));  // ignored
  const auto s = h.read();
  CHECK(s.cumulative == std::vector<uint64_t>{3, 5, 7, 9});  // <=1: 0.5,1,-1  <=2: +1.5,2  <=4: +3,4  +Inf: +4.5,100
  CHECK(s.count == 9);
  CHECK(s.sum == Approx(115.5));
  for (std::size_t i = 1; i < s.cumulative.size(); ++i) CHECK(s.cumulative[i] >= s.cumulative[i - 1]);
  CHECK(exponential_buckets(0.001, 10, 4) == std::vector<double>{0.001, 0.001 * 10, 0.001 * 10 * 10, 0.001 * 10 * 10 * 10});
}

TEST_CASE("counters ignore negative and NaN increments; gauges go both ways", "[metrics]") {
  registry r;
  counter& c = r.add_counter("c_total", "C.").with({});
  c.inc(2);
  c.inc(-5);
  c.inc(std::nan(""));
  CHECK(c.value() == 2);
  gauge& g = r.add_gauge("g", "G.").with({});
  g.inc(3);
  g.dec();
  CHECK(g.value() == 2);
}

TEST_CASE("with() returns the same child for the same values, a different one otherwise", "[metrics]") {
  registry r;
  auto& f = r.add_counter("f_total", "F.", {"a", "b"});
  counter& one = f.with({"x", "y"});
  CHECK(&one == &f.with({"x", "y"}));
  CHECK(&one != &f.with({"y", "x"}));
  CHECK(&one != &f.with({"xy", ""}));  // tuples, not concatenations
  CHECK(valid_metric_name("sluice:requests_total"));
  CHECK_FALSE(valid_metric_name("1abc"));
  CHECK_FALSE(valid_metric_name("a-b"));
  CHECK(valid_label_name("model"));
  CHECK_FALSE(valid_label_name("__name__"));
  CHECK_FALSE(valid_label_name("a:b"));
}

TEST_CASE("concurrent updates and lookups lose nothing", "[metrics]") {
  registry r;
  auto& requests = r.add_counter("r_total", "R.", {"model"});
  auto& latency = r.add_histogram("l_seconds", "L.", {"model"}, {0.5});
  constexpr int threads = 8;
  constexpr int per_thread = 20'000;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::string model = "m" + std::to_string(t % 3);
      for (int i = 0; i < per_thread; ++i) {
        requests.with({model}).inc(0.5);  // lookups race with inserts of the other models
        latency.with({"all"}).observe(i % 2 ? 0.25 : 1.0);
        if (i % 1000 == 0) (void)r.expose();  // exposition races with updates
      }
    });
  }
  for (auto& th : pool) th.join();
  double total = 0;
  for (int m = 0; m < 3; ++m) total += requests.with({"m" + std::to_string(m)}).value();
  CHECK(total == threads * per_thread * 0.5);
  const auto s = latency.with({"all"}).read();
  CHECK(s.count == threads * per_thread);
  CHECK(s.cumulative[0] == threads * per_thread / 2);
  CHECK(s.sum == Approx(threads * per_thread / 2 * 1.25));
}

TEST_CASE("collectors refresh their series at every exposition until they are removed", "[metrics]") {
  registry r;
  auto& blocks = r.add_gauge("demo_blocks", "Blocks in use.", {"model"});
  int state = 3, calls = 0;
  const uint64_t id = r.add_collector([&] {
    ++calls;
    blocks.with({"m"}).set(state);
  });
  CHECK(r.expose().find("demo_blocks{model=\"m\"} 3\n") != std::string::npos);
  state = 7;
  CHECK(r.expose().find("demo_blocks{model=\"m\"} 7\n") != std::string::npos);
  r.remove_collector(id);
  state = 9;
  CHECK(r.expose().find("demo_blocks{model=\"m\"} 7\n") != std::string::npos);  // the last value stays
  CHECK(calls == 2);
  r.remove_collector(id);  // removing twice is harmless
}
