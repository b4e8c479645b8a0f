// The listening socket and its accept loop: accepts on io thread 0 and hands each connection to the next io
// thread (round robin), where its session runs for the connection's whole life. What must not go in here:
// request handling (http_session) or shutdown policy (shutdown.h).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>

#include "http/executor.h"
#include "server_state.h"
#include "sluice/router/error.h"

namespace sluice::gateway {

class io_threads;

// Opens, binds and listens on address:port (0 = any free port), on io thread 0's context.
router::result<std::shared_ptr<tcp_acceptor>> open_listener(io_threads& threads, const std::string& address,
                                                            uint16_t port);

// Starts accepting (the loop owns what it uses, so it may outlive the caller's locals). It ends when the
// acceptor is closed.
void start_accepting(io_threads& threads, std::shared_ptr<tcp_acceptor> acceptor, std::shared_ptr<server_state> state);

}  // namespace sluice::gateway
