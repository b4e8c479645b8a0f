// The executor every connection, upstream call and timer of the data plane runs on: one io_context per io
// thread (io_threads.h), named by its concrete type. No strands and no type-erased any_io_executor on the hot
// path: a strand per connection and any_io_executor's type erasure together cost more instructions per request
// than the HTTP parsing (measured with callgrind; docs/benchmarks.md "Proxy"). Everything an io_context runs
// happens on its one thread, so a connection's objects need no strand to be safe.
// What must not go in here: anything but these names.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_allocator.hpp>
#include <boost/asio/recycling_allocator.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <utility>

namespace sluice::gateway {

using io_executor = boost::asio::io_context::executor_type;

// A coroutine that runs on an io thread.
template <class T = void>
using task = boost::asio::awaitable<T, io_executor>;

// The completion token of every awaited operation: errors come back as values, `auto [ec, n] = co_await ...`.
inline constexpr auto use_task = boost::asio::as_tuple(boost::asio::use_awaitable_t<io_executor>{});

using tcp_socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, io_executor>;
using tcp_acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, io_executor>;
using io_timer = boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                                   boost::asio::wait_traits<std::chrono::steady_clock>, io_executor>;

// A completion handler (or posted function) whose operation's memory comes from Asio's per-thread recycling: a
// plain lambda's would come from the heap (with BOOST_ASIO_NO_DEPRECATED, Asio's default allocation hooks are
// off). Wrap every callback the data plane hands to Asio.
template <class Handler>
auto recycled(Handler&& h) {
  return boost::asio::bind_allocator(boost::asio::recycling_allocator<void>(), std::forward<Handler>(h));
}

}  // namespace sluice::gateway
