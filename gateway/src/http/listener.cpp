// See listener.h.
#include "http/listener.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <cstdio>

#include "http/http_session.h"
#include "http/io_threads.h"
#include "ops/log.h"

namespace sluice::gateway {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A named coroutine taking the session by value: a capturing lambda's captures would die before the
// coroutine body runs.
task<void> run_session(std::shared_ptr<http_session> session) { co_await session->run(); }

// Owns what it uses (the acceptor and the server state) so that it can outlive the caller's locals.
task<void> accept_loop(io_threads* threads, std::shared_ptr<tcp_acceptor> acceptor,
                       std::shared_ptr<server_state> state) {
  for (;;) {
    asio::io_context& home = threads->next();  // the io thread this connection will live on
    tcp_socket socket(home.get_executor());
    auto [ec] = co_await acceptor->async_accept(socket, use_task);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    if (state->connections_open.load(std::memory_order_relaxed) >= state->policy->server.max_connections) {
      continue;  // over the limit: the socket closes as it goes out of scope
    }
    boost::system::error_code nec;
    socket.set_option(tcp::no_delay(true), nec);
    auto session = std::make_shared<http_session>(std::move(socket), state);
    asio::co_spawn(home.get_executor(), run_session(std::move(session)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log_line(policies::log_level::error, "internal error in a connection: %s", ex.what());
      }
    });
  }
}

}  // namespace

router::result<std::shared_ptr<tcp_acceptor>> open_listener(io_threads& threads, const std::string& address,
                                                            uint16_t port) {
  auto acceptor = std::make_shared<tcp_acceptor>(threads.context(0).get_executor());
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(address, ec);
  if (ec) return router::error{router::errc::internal, "invalid listen address '" + address + "'"};
  const tcp::endpoint endpoint(addr, port);
  if (acceptor->open(endpoint.protocol(), ec); !ec) {
    acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    acceptor->bind(endpoint, ec);
  }
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return router::error{router::errc::internal,
                         "cannot listen on " + address + ":" + std::to_string(port) + ": " + ec.message()};
  }
  return acceptor;
}

void start_accepting(io_threads& threads, std::shared_ptr<tcp_acceptor> acceptor, std::shared_ptr<server_state> state) {
  auto ex = acceptor->get_executor();
  asio::co_spawn(ex, accept_loop(&threads, std::move(acceptor), std::move(state)), asio::detached);
}

}  // namespace sluice::gateway
