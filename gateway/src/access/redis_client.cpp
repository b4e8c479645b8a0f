// See redis_client.h.
#include "access/redis_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/write.hpp>

#include "http/deadlines.h"
#include "http/io_threads.h"

namespace sluice::gateway {

namespace asio = boost::asio;

// A connection whose deadline closes its socket: the operation waiting on it then fails.
class redis_client::connection final : public deadline_entry {
 public:
  explicit connection(io_executor ex) : deadline_entry(ex.context()), socket(ex) {}
  ~connection() { detach(); }
  tcp_socket socket;
  std::string in;  // bytes read and not yet parsed
  bool timed_out = false;

  // Writes `bytes` and reads one reply, within the deadline set by the caller.
  task<redis_reply> round_trip(std::string_view bytes) {
    redis_reply r;
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), use_task);
    if (wec) {
      r.error = timed_out ? "timed out" : "write failed: " + wec.message();
      co_return r;
    }
    for (;;) {
      size_t consumed = 0;
      const auto s = resp::parse(in, r.value, consumed);
      if (s == resp::parse_status::complete) {
        in.erase(0, consumed);
        r.ok = true;
        co_return r;
      }
      if (s == resp::parse_status::invalid) {
        r.error = "not a RESP reply";
        co_return r;
      }
      char buf[4096];
      auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), use_task);
      if (rec) {
        r.error = timed_out ? "timed out" : "read failed: " + rec.message();
        co_return r;
      }
      in.append(buf, n);
    }
  }

 private:
  void on_deadline() override {
    timed_out = true;
    boost::system::error_code ignored;
    socket.close(ignored);
  }
};

redis_client::redis_client(redis_options opts, size_t io_thread_count)
    : opts_(std::move(opts)), idle_(std::max<size_t>(1, io_thread_count)) {}

redis_client::~redis_client() = default;

task<std::unique_ptr<redis_client::connection>> redis_client::connect(io_executor ex,
                                                                      deadline_entry::clock::time_point deadline,
                                                                      std::string& error) {
  auto c = std::make_unique<connection>(ex);
  c->expire_at(deadline);  // closes the socket: a connect or handshake that hangs fails
  asio::ip::basic_resolver<asio::ip::tcp, io_executor> resolver(ex);
  const std::string port = std::to_string(opts_.port);  // (named: no temporaries in a co_await expression)
  auto [rec, endpoints] = co_await resolver.async_resolve(opts_.host, port, use_task);
  if (rec) {
    error = "cannot resolve " + opts_.host + ": " + rec.message();
    co_return nullptr;
  }
  auto [cec, ep] = co_await asio::async_connect(c->socket, endpoints, use_task);
  if (cec) {
    error = c->timed_out ? "connect timed out" : "cannot connect to " + opts_.host + ":" + std::to_string(opts_.port) +
                                                  ": " + cec.message();
    co_return nullptr;
  }
  c->socket.set_option(asio::ip::tcp::no_delay(true));
  std::string hello;
  if (!opts_.password.empty()) resp::append_command(hello, {"AUTH", opts_.password});
  const std::string db = std::to_string(opts_.db);
  if (opts_.db != 0) resp::append_command(hello, {"SELECT", db});
  // Pipelined: the replies come in order, one per command.
  size_t expected = (opts_.password.empty() ? 0 : 1) + (opts_.db != 0 ? 1 : 0);
  if (expected > 0) {
    auto first = co_await c->round_trip(hello);
    for (size_t i = 0;; ++i) {
      if (!first.ok) {
        error = "redis handshake: " + first.error;
        co_return nullptr;
      }
      if (first.value.type == resp::value::kind::error) {
        error = "redis refused " + std::string(i == 0 && !opts_.password.empty() ? "AUTH" : "SELECT") + ": " +
                first.value.text;
        co_return nullptr;
      }
      if (i + 1 == expected) break;
      first = co_await c->round_trip({});
    }
  }
  co_return c;
}

task<redis_reply> redis_client::call(std::string command) {
  const io_executor ex = co_await asio::this_coro::executor;
  const int t = io_threads::current_index();
  const bool pooled = t >= 0 && static_cast<size_t>(t) < idle_.size();
  std::unique_ptr<connection> c;
  if (pooled && !idle_[t].empty()) {
    c = std::move(idle_[t].back());
    idle_[t].pop_back();
  }
  const auto deadline = deadline_entry::coarse_now() + opts_.timeout;
  redis_reply r;
  if (!c) {
    std::string error;
    c = co_await connect(ex, deadline, error);
    if (!c) {
      r.error = std::move(error);
      co_return r;
    }
  }
  c->timed_out = false;
  c->expire_at(deadline);
  r = co_await c->round_trip(command);
  c->expire_never();
  c->detach();
  if (r.ok && pooled && idle_[t].size() < opts_.max_idle_per_thread) idle_[t].push_back(std::move(c));
  co_return r;
}

}  // namespace sluice::gateway
