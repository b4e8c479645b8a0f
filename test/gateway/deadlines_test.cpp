// deadlines: the io thread's sweep calls an entry once its deadline has passed, and only then.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <chrono>

#include "http/deadlines.h"

using namespace sluice::gateway;
using namespace std::chrono_literals;

namespace {

struct probe final : deadline_entry {
  explicit probe(boost::asio::io_context& ioc) : deadline_entry(ioc) {}
  void on_deadline() override { ++fired; }
  int fired = 0;
};

}  // namespace

TEST_CASE("an entry is called once its deadline passes", "[deadlines]") {
  boost::asio::io_context ioc;
  probe due(ioc), later(ioc), never(ioc);
  due.expire_after(20ms);
  later.expire_after(10s);
  never.expire_after(20ms);
  never.expire_never();  // cleared before it came
  const auto t0 = std::chrono::steady_clock::now();
  while (due.fired == 0 && std::chrono::steady_clock::now() - t0 < 2s) ioc.run_one_for(100ms);
  CHECK(due.fired == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < 20ms + 3 * deadline_entry::tick);
  CHECK(later.fired == 0);
  CHECK(never.fired == 0);
  CHECK(due.expiry() == deadline_entry::clock::time_point::max());  // cleared when it fired
  // Detached entries are not swept; the sweep stops once nothing is left (run() returns).
  due.detach();
  later.detach();
  never.detach();
  ioc.restart();
  ioc.run_for(3 * deadline_entry::tick);
  CHECK(ioc.stopped());
}

TEST_CASE("the coarse clock is the steady clock, to a few milliseconds", "[deadlines]") {
  const auto precise = std::chrono::steady_clock::now();
  const auto coarse = deadline_entry::coarse_now();
  CHECK(std::chrono::abs(coarse - precise) < 50ms);
}
