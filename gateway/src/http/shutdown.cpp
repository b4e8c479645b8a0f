// See shutdown.h. Everything here runs on io thread 0 (the signal set's and the timer's context).
#include "http/shutdown.h"

#include <boost/asio/post.hpp>
#include <cstdio>

#include "http/http_session.h"
#include "http/io_threads.h"
#include "ops/log.h"
#include "ops/sd_notify.h"

namespace sluice::gateway {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

namespace {
// After the cut, how long a client may take to read the answer it was given before its socket is closed.
constexpr std::chrono::seconds cut_write_grace{2};
// After force-closing sockets, how long backends get to report their last callback. Past it the io_context
// stops with work pending; ownership (server_state by shared_ptr) keeps that safe, it is only less tidy.
constexpr std::chrono::seconds forced_grace{2};
constexpr std::chrono::milliseconds poll_interval{20};
}  // namespace

graceful_shutdown::graceful_shutdown(io_threads& threads, std::shared_ptr<server_state> state,
                                     std::shared_ptr<tcp_acceptor> acceptor)
    : threads_(threads), state_(std::move(state)), acceptor_(std::move(acceptor)),
      signals_(threads.context(0), SIGINT, SIGTERM), timer_(threads.context(0)) {}

void graceful_shutdown::arm() {
  signals_.async_wait([self = shared_from_this()](const boost::system::error_code& ec, int sig) {
    if (!ec) self->on_signal(sig);
  });
}

void graceful_shutdown::on_signal(int sig) {
  if (stage_ == stage::serving) {
    log_line(policies::log_level::info, "signal %d, finishing requests in flight (up to %.1f s; a second signal cuts them now)",
                 sig, std::chrono::duration<double>(state_->policy->server.shutdown_grace).count());
    begin_drain();
    arm();
    poll();
    return;
  }
  if (stage_ == stage::draining) {
    log_line(policies::log_level::warn, "signal %d again, cutting the requests still running", sig);
    cut_all();
  }
  arm();
}

void graceful_shutdown::begin_drain() {
  stage_ = stage::draining;
  next_stage_at_ = clock::now() + state_->policy->server.shutdown_grace;
  state_->draining.store(true);
  state_->ready.store(false);
  sd_notify("STOPPING=1\nSTATUS=draining");
  boost::system::error_code ignored;
  acceptor_->close(ignored);
  state_->sessions.for_each([](const std::shared_ptr<http_session>& s) {
    asio::post(s->executor(), [s] { s->close_if_idle(); });
  });
}

void graceful_shutdown::cut_all() {
  stage_ = stage::cut;
  next_stage_at_ = clock::now() + cut_write_grace;
  int64_t n = state_->requests_active.load();
  if (n > 0) log_line(policies::log_level::warn, "cutting %lld request%s still running", static_cast<long long>(n), n == 1 ? "" : "s");
  state_->sessions.for_each([](const std::shared_ptr<http_session>& s) {
    asio::post(s->executor(), [s] { s->cut(); });
  });
}

void graceful_shutdown::poll() {
  if (state_->connections_open.load() == 0 && state_->requests_active.load() == 0) {
    stage_ = stage::done;
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    threads_.stop();  // what is left (an upstream call returning its connection to the pool) needs no more time
    return;
  }
  const auto now = clock::now();
  if (now >= next_stage_at_) {
    switch (stage_) {
      case stage::draining: cut_all(); break;
      case stage::cut:
        log_line(policies::log_level::warn, "closing connections whose clients did not read their answer");
        stage_ = stage::forced;
        next_stage_at_ = now + forced_grace;
        state_->sessions.for_each([](const std::shared_ptr<http_session>& s) {
          asio::post(s->executor(), [s] { s->force_close(); });
        });
        break;
      case stage::forced:
        log_line(policies::log_level::warn, "stopping with %lld connection(s) still open",
                     static_cast<long long>(state_->connections_open.load()));
        stage_ = stage::done;
        threads_.stop();
        return;
      default: break;
    }
  }
  timer_.expires_after(poll_interval);
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->poll();
  });
}

}  // namespace sluice::gateway
