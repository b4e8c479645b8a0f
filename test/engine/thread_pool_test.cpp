// The engine's thread pool: every thread runs the job, barriers order phases, runs repeat cleanly.
#include <catch2/catch.hpp>

#include <atomic>
#include <vector>

#include "thread_pool.h"

using namespace sluice::engine;

TEST_CASE("thread_pool: barriers separate phases across many runs", "[thread_pool]") {
  for (int n : {1, 2, 3}) {
    thread_pool pool(n);
    CHECK(pool.size() == n);
    std::vector<int> cells(size_t(n), 0);
    std::atomic<int> errors{0};
    for (int run = 0; run < 200; ++run) {
      pool.run([&](int tid, int nth) {
        for (int phase = 1; phase <= 5; ++phase) {
          cells[size_t(tid)] = run * 10 + phase;
          pool.barrier();
          for (int j = 0; j < nth; ++j)
            if (cells[size_t(j)] != run * 10 + phase) errors.fetch_add(1);
          pool.barrier();
        }
      });
    }
    CHECK(errors.load() == 0);
  }
}

TEST_CASE("thread_pool: split_range covers everything once with aligned cuts", "[thread_pool]") {
  for (int n : {0, 1, 7, 64, 576, 1000})
    for (int count : {1, 2, 3, 5}) {
      int covered = 0, prev_end = 0;
      for (int i = 0; i < count; ++i) {
        auto [b, e] = split_range(n, i, count, 8);
        CHECK(b == prev_end);
        CHECK((b % 8 == 0 || b == n));
        covered += e - b;
        prev_end = e;
      }
      CHECK(covered == n);
    }
}
