// event_queue: back-pressure for producers that ask (when_ready) and the request deadline of next().
#include <catch2/catch.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "api/event_queue.h"

using namespace sluice;
using namespace sluice::gateway;
namespace asio = boost::asio;

namespace {

router::chunk chunk_of(size_t bytes) {
  router::chunk c;
  c.raw.assign(bytes, 'x');
  return c;
}

// Takes `n` events off `q` (on its io_context) into `out`; nullopt ends early.
void take(asio::io_context& ioc, io_executor ex, const std::shared_ptr<event_queue>& q, int n,
          std::vector<std::optional<backend_event>>& out, bool ignore_gone = false) {
  auto reader = [q, n, &out, ignore_gone]() -> task<void> {
    for (int i = 0; i < n; ++i) {
      auto ev = co_await q->next(ignore_gone);
      const bool stop = !ev;
      out.push_back(std::move(ev));
      if (stop) co_return;
    }
  };
  asio::co_spawn(ex, reader(), asio::detached);
  ioc.restart();
  ioc.poll();
}

}  // namespace

TEST_CASE("a producer that asks waits while the queue is full and resumes when half of it is read", "[event_queue]") {
  asio::io_context ioc;
  auto ex = ioc.get_executor();
  auto q = std::make_shared<event_queue>(ex);
  const size_t piece = event_queue::max_queued_bytes / 4;  // (each chunk also counts a small fixed overhead)
  for (int i = 0; i < 5; ++i) q->on_chunk(chunk_of(piece));
  int resumed = 0;
  q->when_ready([&] { ++resumed; });
  ioc.poll();
  CHECK(resumed == 0);  // five quarters queued: full

  std::vector<std::optional<backend_event>> got;
  take(ioc, ex, q, 2, got);
  REQUIRE(got.size() == 2);
  CHECK(resumed == 0);  // three quarters left: still above half
  take(ioc, ex, q, 2, got);
  CHECK(resumed == 1);  // at most half left: the producer goes on, once
  take(ioc, ex, q, 1, got);
  CHECK(resumed == 1);

  // With room, when_ready answers at once.
  q->when_ready([&] { ++resumed; });
  ioc.restart();
  ioc.poll();
  CHECK(resumed == 2);
}

TEST_CASE("a producer still waiting when it finishes is let go", "[event_queue]") {
  asio::io_context ioc;
  auto q = std::make_shared<event_queue>(ioc.get_executor());
  q->on_chunk(chunk_of(event_queue::max_queued_bytes));
  bool resumed = false;
  q->when_ready([&] { resumed = true; });
  ioc.poll();
  CHECK_FALSE(resumed);
  q->on_done(router::error{router::errc::cancelled, "cancelled"});
  ioc.restart();
  ioc.poll();
  CHECK(resumed);  // nothing may hold on to a finished producer's callback
}

TEST_CASE("the deadline interrupts next(), even while events keep coming", "[event_queue]") {
  asio::io_context ioc;
  auto ex = ioc.get_executor();
  auto q = std::make_shared<event_queue>(ex);
  q->set_deadline(std::chrono::steady_clock::now() + std::chrono::milliseconds(30));
  q->on_chunk(chunk_of(10));
  std::vector<std::optional<backend_event>> got;
  take(ioc, ex, q, 1, got);
  REQUIRE(got.size() == 1);
  CHECK(got[0].has_value());  // before the deadline

  // Waiting for an event that does not come: the deadline wakes next().
  const auto t0 = std::chrono::steady_clock::now();
  got.clear();
  auto reader = [q, &got]() -> task<void> { got.push_back(co_await q->next()); };
  asio::co_spawn(ex, reader(), asio::detached);
  ioc.restart();
  ioc.run_for(std::chrono::seconds(2));
  REQUIRE(got.size() == 1);
  CHECK_FALSE(got[0].has_value());
  CHECK(q->interrupted() == event_queue::interruption::deadline);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));

  // Past the deadline, queued events are not handed out any more, except to a drain (ignore_gone).
  q->on_chunk(chunk_of(10));
  q->on_done(router::error{router::errc::cancelled, "cancelled"});
  got.clear();
  take(ioc, ex, q, 1, got);
  REQUIRE(got.size() == 1);
  CHECK_FALSE(got[0].has_value());
  got.clear();
  take(ioc, ex, q, 2, got, /*ignore_gone=*/true);
  REQUIRE(got.size() == 2);
  CHECK(got[0].has_value());
  CHECK(got[1].has_value());
  CHECK(got[1]->index() == 1);
}
