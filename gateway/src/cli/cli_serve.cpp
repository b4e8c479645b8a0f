// `sluice serve` and `sluice validate`: load the policy, build one backend per model, run the HTTP server.
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <functional>

#include "access/access.h"
#include "ops/log.h"
#include "ops/sd_notify.h"
#include "serving.h"
#include "cli/cli.h"
#include "http/asio_timers.h"
#include "http/io_threads.h"
#include "http/listener.h"
#include "http/shutdown.h"
#include "local/local_backend.h"
#include "local/task_backend.h"
#include "ops/gateway_metrics.h"
#include "ops/resilience_log.h"
#include "upstream/upstream_openai.h"

namespace sluice::gateway {

using policies::log_level;

namespace {

bool is_loopback(const std::string& address) {
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(address, ec);
  if (ec) return address == "localhost";
  return a.is_loopback();
}

void print_errors(const std::vector<policies::load_error>& errors) {
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

}  // namespace

int run_validate(int argc, char** argv) {
  if (argc != 1 || std::string_view(argv[0]) == "--help") {
    std::fprintf(argc == 1 ? stdout : stderr, "usage: sluice validate FILE\n");
    return argc == 1 ? 0 : 2;
  }
  auto loaded = policies::load_policy_file(argv[0]);
  if (!loaded) {
    print_errors(loaded.error());
    std::fprintf(stderr, "%s: %zu error%s\n", argv[0], loaded.error().size(), loaded.error().size() == 1 ? "" : "s");
    return 1;
  }
  // The files routes name (classifier, acceptance model) are checked too: serve would refuse them.
  const auto problems = router::check_route_files(**loaded);
  for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
  if (!problems.empty()) {
    std::fprintf(stderr, "%s: %zu error%s\n", argv[0], problems.size(), problems.size() == 1 ? "" : "s");
    return 1;
  }
  std::printf("%s: ok (%zu models, %zu routes)\n", argv[0], (*loaded)->models.size(), (*loaded)->routes.size());
  return 0;
}

int run_serve(int argc, char** argv) {
  std::string config;
  policies::server_overrides overrides;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "sluice serve: %s needs a value\n", name);
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--config" || a == "-c") {
      const char* v = value("--config");
      if (!v) return 2;
      config = v;
    } else if (a == "--port") {
      const char* v = value("--port");
      if (!v) return 2;
      char* end = nullptr;
      const long p = std::strtol(v, &end, 10);
      if (*end != '\0' || p < 0 || p > 65535) {
        std::fprintf(stderr, "sluice serve: --port must be 0..65535, got '%s'\n", v);
        return 2;
      }
      overrides.port = static_cast<uint16_t>(p);
    } else if (a == "--listen") {
      const char* v = value("--listen");
      if (!v) return 2;
      overrides.listen_address = v;
    } else if (a == "--shutdown-grace") {
      const char* v = value("--shutdown-grace");
      if (!v) return 2;
      char* end = nullptr;
      const double seconds = std::strtod(v, &end);
      if (*end != '\0' || !(seconds >= 0.0 && seconds <= 86400.0)) {
        std::fprintf(stderr, "sluice serve: --shutdown-grace must be a number of seconds in 0..86400, got '%s'\n", v);
        return 2;
      }
      overrides.shutdown_grace = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
    } else if (a == "--log-level") {
      const char* v = value("--log-level");
      if (!v) return 2;
      overrides.log_level = v;  // (checked by the loader, like server.log_level)
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: sluice serve --config FILE [--port N] [--listen ADDR] [--shutdown-grace SECONDS]\n"
                  "                    [--log-level debug|info|warn|error]\n");
      return 0;
    } else {
      std::fprintf(stderr,
                   "sluice serve: unknown option '%s' (valid: --config, --port, --listen, --shutdown-grace, "
                   "--log-level)\n",
                   argv[i]);
      return 2;
    }
  }
  if (config.empty()) {
    std::fprintf(stderr, "sluice serve: --config FILE is required\n");
    return 2;
  }
  auto loaded = policies::load_policy_file(config, overrides);
  if (!loaded) {
    print_errors(loaded.error());
    return 1;
  }
  const std::shared_ptr<const policies::policy> policy = *loaded;
  set_log_level(policy->server.log);
  for (const auto& name : policies::missing_api_keys(*policy)) {
    const auto* m = policy->find_model(name);
    log_line(log_level::warn,
             "model '%s': environment variable %s is not set; its upstream will reject requests (clients get 502)",
             name.c_str(), m ? m->api_key_env.c_str() : "?");
  }

  const int threads = policy->server.threads > 0 ? policy->server.threads
                                                 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Declared first so that they are destroyed last: coroutines still suspended when they go are destroyed with
  // them, and everything they touch is owned by the shared server_state they hold.
  io_threads io(threads);

  // Bound before the models load: a port in use is reported at once, not after a long model load. Connections
  // wait in the listen backlog until the gateway is ready to accept them.
  auto listening = open_listener(io, policy->server.listen_address, policy->server.port);
  if (!listening) {
    std::fprintf(stderr, "sluice: %s\n", listening.error().message.c_str());
    return 1;
  }

  auto state = std::make_shared<server_state>();
  state->policy = policy;
  state->metrics = std::make_shared<gateway_metrics>(policy->model_names(), policy->route_names());
  serving_builder builder{io, state->metrics, make_asio_timers(io.context(0)),
                          std::make_shared<resilience_log>(state->metrics)};
  if (!policy->decision_log.path.empty()) {
    auto log = decision_log::open(policy->decision_log);
    if (!log) {
      std::fprintf(stderr, "sluice: %s\n", log.error().message.c_str());
      return 1;
    }
    state->decisions = std::move(*log);
    state->routed = std::make_shared<request_index>(1'000'000);
  }

  if (!policy->access_log.path.empty()) {
    auto log = decision_log::open(policy->access_log);
    if (!log) {
      std::fprintf(stderr, "sluice: access_log: %s\n", log.error().message.c_str());
      return 1;
    }
    state->access_log = std::move(*log);
    state->access_log_level = policy->access_log.level;
  }
  if (policy->requires_keys()) {
    log_line(log_level::info, "%zu API key(s); budgets and rate limits counted in %s", policy->keys.size(),
             policy->limits_state.redis ? "redis" : "this process's memory");
  } else if (!is_loopback(policy->server.listen_address)) {
    log_line(log_level::warn,
             "listening on %s without API keys: anyone who reaches the port spends the upstream keys (add a 'keys' "
             "section; see docs/policy.md)",
             policy->server.listen_address.c_str());
  }

  const std::shared_ptr<tcp_acceptor> acceptor = *listening;
  const auto bound = acceptor->local_endpoint();
  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();

  // SIGHUP and POST /admin/reload load the policy file again (serving.h): a valid one is swapped in, requests
  // in flight finish with the one they started with.
  policy_reloader reloader(builder, config, overrides, state);
  state->request_reload = [&reloader](std::string why) { return reloader.trigger(std::move(why)); };
  state->reload_status = [&reloader] { return reloader.status_json(); };
  auto hup = std::make_shared<boost::asio::signal_set>(io.context(0), SIGHUP);
  std::function<void()> wait_hup = [&, hup] {
    hup->async_wait([&](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (!reloader.trigger("SIGHUP")) log_line(log_level::warn, "SIGHUP: a policy reload is already running");
      wait_hup();
    });
  };
  wait_hup();

  // Connections are accepted from now on, while the models load on a thread of their own: /healthz answers 200,
  // /readyz and everything else 503 until the gateway is ready; then the listening line says so.
  std::make_shared<graceful_shutdown>(io, state, acceptor)->arm();
  start_accepting(io, acceptor, state);
  bool load_failed = false;
  std::thread loader([&] {
    auto built = build_serving_config(builder, policy, nullptr, nullptr);
    if (!built) {
      std::fprintf(stderr, "sluice: %s\n", built.error().message.c_str());
      load_failed = true;
      io.stop();
      return;
    }
    state->set_config(*built);
    boost::asio::post(io.context(0), [&, state] {
      if (state->draining.load()) return;
      state->ready = true;
      std::printf("sluice: listening on http://%s:%u\n", host.c_str(), bound.port());
      std::fflush(stdout);
      sd_notify("READY=1\nSTATUS=serving");  // (systemd Type=notify: deploy/systemd/sluice.service)
    });
  });

  io.run();  // until the shutdown stops the io threads
  loader.join();  // (a stop while the models load waits for the load to end)
  state->request_reload = nullptr;
  state->reload_status = nullptr;
  if (load_failed) return 1;
  // The network has stopped: stop the backends' own threads (the engine's) while the io_context they post
  // to still exists. Their last callbacks are queued and dropped with it.
  reloader.wait();  // a reload in progress finishes first
  if (const auto cfg = state->config()) {
    for (const auto& [name, b] : cfg->backends) b->stop();
  }
  for (const auto& b : reloader.retired()) b->stop();
  if (state->decisions) state->decisions->close();  // every line of the requests served is on disk
  if (state->access_log) state->access_log->close();
  log_line(log_level::info, "stopped");
  return 0;
}

}  // namespace sluice::gateway
