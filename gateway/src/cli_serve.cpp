// `sluice serve` and `sluice validate`: load the policy, build one backend per model, run the HTTP server.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "api_handlers.h"
#include "cli.h"
#include "gateway_metrics.h"
#include "http_session.h"
#include "local_backend.h"
#include "upstream_openai.h"

namespace sluice::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// How long a SIGTERM waits for requests in flight before the process exits anyway.
constexpr std::chrono::seconds shutdown_grace{10};

void print_errors(const std::vector<policies::load_error>& errors) {
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
}

// A named coroutine taking the session by value: a capturing lambda's captures would die before the
// coroutine body runs.
asio::awaitable<void> run_session(std::shared_ptr<http_session> session) { co_await session->run(); }

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, server_state& state) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::make_strand(acceptor.get_executor()),
                                                       asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    if (state.connections_open.load(std::memory_order_relaxed) >= state.policy->server.max_connections) {
      continue;  // over the limit: the socket closes as it goes out of scope
    }
    boost::system::error_code nec;
    socket.set_option(tcp::no_delay(true), nec);
    auto executor = socket.get_executor();  // the connection's strand
    auto session = std::make_shared<http_session>(boost::beast::tcp_stream(std::move(socket)), state);
    asio::co_spawn(executor, run_session(std::move(session)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "sluice: internal error in a connection: %s\n", ex.what());
      }
    });
  }
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
  std::printf("%s: ok (%zu models)\n", argv[0], (*loaded)->models.size());
  return 0;
}

int run_serve(int argc, char** argv) {
  std::string config;
  std::optional<int> port;
  std::string listen;
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
      port = static_cast<int>(p);
    } else if (a == "--listen") {
      const char* v = value("--listen");
      if (!v) return 2;
      listen = v;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: sluice serve --config FILE [--port N] [--listen ADDR]\n");
      return 0;
    } else {
      std::fprintf(stderr, "sluice serve: unknown option '%s' (valid: --config, --port, --listen)\n", argv[i]);
      return 2;
    }
  }
  if (config.empty()) {
    std::fprintf(stderr, "sluice serve: --config FILE is required\n");
    return 2;
  }
  auto loaded = policies::load_policy_file(config);
  if (!loaded) {
    print_errors(loaded.error());
    return 1;
  }
  auto policy = std::const_pointer_cast<policies::policy>(*loaded);
  if (port) policy->server.port = static_cast<uint16_t>(*port);
  if (!listen.empty()) policy->server.listen_address = listen;
  for (const auto& name : policies::missing_api_keys(*policy)) {
    const auto* m = policy->find_model(name);
    std::fprintf(stderr,
                 "sluice: warning: model '%s': environment variable %s is not set; its upstream will reject "
                 "requests (clients get 502)\n",
                 name.c_str(), m ? m->api_key_env.c_str() : "?");
  }

  const int threads = policy->server.threads > 0 ? policy->server.threads
                                                 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  asio::io_context ioc(threads);

  router::backend_map backends;
  upstream_options uopts;
  uopts.timeout = policy->server.request_timeout;
  for (const auto& m : policy->models) {
    if (m.kind == policies::model_kind::openai) {
      auto b = make_openai_backend(ioc, m, uopts);
      if (!b) {
        std::fprintf(stderr, "sluice: %s\n", b.error().message.c_str());
        return 1;
      }
      backends[m.name] = *b;
    } else if (m.kind == policies::model_kind::local) {
      std::fprintf(stderr, "sluice: loading local model '%s' from %s\n", m.name.c_str(), m.local.gguf_path.c_str());
      auto b = make_local_backend(m);
      if (!b) {
        std::fprintf(stderr, "sluice: model '%s': %s\n", m.name.c_str(), b.error().message.c_str());
        return 1;
      }
      backends[m.name] = *b;
    } else {
      std::fprintf(stderr, "sluice: warning: model '%s' has kind anthropic, which this build does not serve yet\n",
                   m.name.c_str());
    }
  }

  const std::vector<std::string> names = policy->model_names();
  gateway_metrics metrics(names);
  server_state state;
  state.policy = policy;
  state.router = std::make_shared<router::router>(policy, std::move(backends));
  state.metrics = &metrics;

  tcp::acceptor acceptor(ioc);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(policy->server.listen_address, ec);
  if (ec) {
    std::fprintf(stderr, "sluice: invalid listen address '%s'\n", policy->server.listen_address.c_str());
    return 1;
  }
  const tcp::endpoint endpoint(address, policy->server.port);
  if (acceptor.open(endpoint.protocol(), ec); !ec) {
    acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    acceptor.bind(endpoint, ec);
  }
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "sluice: cannot listen on %s:%u: %s\n", policy->server.listen_address.c_str(),
                 policy->server.port, ec.message().c_str());
    return 1;
  }
  const auto bound = acceptor.local_endpoint();
  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  // Graceful shutdown: stop accepting, let requests in flight finish (connections close after their current
  // response), and stop when none is left or after the grace period. A second signal stops at once.
  asio::steady_timer drain_timer(ioc);
  std::chrono::steady_clock::time_point drain_deadline;  // set by the first signal
  std::function<void()> poll_drained = [&] {
    if (state.requests_active.load() == 0 || std::chrono::steady_clock::now() >= drain_deadline) {
      ioc.stop();
      return;
    }
    drain_timer.expires_after(std::chrono::milliseconds(20));
    drain_timer.async_wait([&](const boost::system::error_code&) { poll_drained(); });
  };
  std::function<void(const boost::system::error_code&, int)> on_signal = [&](const boost::system::error_code& ec,
                                                                               int sig) {
    if (ec) return;
    if (state.draining.exchange(true)) {
      std::fprintf(stderr, "sluice: signal %d again, stopping now\n", sig);
      ioc.stop();
      return;
    }
    std::fprintf(stderr, "sluice: signal %d, finishing requests in flight (up to %lld s)\n", sig,
                 static_cast<long long>(shutdown_grace.count()));
    boost::system::error_code ignored;
    acceptor.close(ignored);
    drain_deadline = std::chrono::steady_clock::now() + shutdown_grace;
    poll_drained();
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  asio::co_spawn(asio::make_strand(ioc), accept_loop(acceptor, state), asio::detached);
  state.ready = true;
  std::printf("sluice: listening on http://%s:%u\n", host.c_str(), bound.port());
  std::fflush(stdout);

  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace sluice::gateway
