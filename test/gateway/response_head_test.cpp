// response_head: the hand-written response heads and their header lines.
#include <catch2/catch.hpp>

#include <string>

#include "http/response_head.h"

using namespace sluice::gateway;

TEST_CASE("header lines are written in order, values checked", "[response_head]") {
  header_block h;
  CHECK(h.add("x-sluice-tier", "bench"));
  CHECK(h.add("x-sluice-cost-usd", "0.00000840"));
  CHECK(h.text() == "x-sluice-tier: bench\r\nx-sluice-cost-usd: 0.00000840\r\n");
#ifdef NDEBUG  // (debug builds assert: a value with a line break is a bug in the gateway)
  CHECK_FALSE(h.add("x-bad", "a\r\nInjected: yes"));
  CHECK_FALSE(h.add("x-bad", std::string_view("a\0b", 3)));
  CHECK(h.text() == "x-sluice-tier: bench\r\nx-sluice-cost-usd: 0.00000840\r\n");  // nothing was added
#endif
  h.clear();
  CHECK(h.empty());
  static_assert(is_token("x-sluice-tier") && !is_token("bad name") && !is_token(""));
}

TEST_CASE("status lines and Connection follow the version and keep-alive", "[response_head]") {
  std::string out;
  append_status_line(out, 11, 200);
  CHECK(out == "HTTP/1.1 200 OK\r\n");
  out.clear();
  append_status_line(out, 10, 404);
  CHECK(out == "HTTP/1.0 404 Not Found\r\n");
  out.clear();
  append_connection(out, 11, true);
  CHECK(out.empty());
  append_connection(out, 11, false);
  CHECK(out == "Connection: close\r\n");
  out.clear();
  append_connection(out, 10, true);
  CHECK(out == "Connection: keep-alive\r\n");
  out.clear();
  append_connection(out, 10, false);
  CHECK(out.empty());
  append_decimal(out, 617);
  CHECK(out == "617");
}
