// RESP2 encoding and incremental reply parsing (access/resp.h).
#include <catch2/catch.hpp>

#include "access/resp.h"

using namespace sluice::gateway;

TEST_CASE("commands are arrays of bulk strings, binary-safe", "[resp]") {
  std::string out;
  resp::append_command(out, {"SET", "k", std::string_view("a\r\nb", 4)});
  CHECK(out == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
  out.clear();
  resp::append_command(out, std::vector<std::string_view>{"PING", ""});
  CHECK(out == "*2\r\n$4\r\nPING\r\n$0\r\n\r\n");
}

TEST_CASE("every reply type parses, and a reply split anywhere is incomplete until whole", "[resp]") {
  const std::string reply = "*7\r\n:0\r\n:-12\r\n+OK\r\n$5\r\nab\r\nc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n-ERR x y\r\n";
  for (size_t cut = 0; cut < reply.size(); ++cut) {
    resp::value v;
    size_t used = 0;
    CHECK(resp::parse(std::string_view(reply).substr(0, cut), v, used) == resp::parse_status::incomplete);
  }
  resp::value v;
  size_t used = 0;
  REQUIRE(resp::parse(reply + "+next\r\n", v, used) == resp::parse_status::complete);
  CHECK(used == reply.size());
  REQUIRE(v.type == resp::value::kind::array);
  REQUIRE(v.elements.size() == 7);
  CHECK(v.elements[0].integer == 0);
  CHECK(v.elements[1].integer == -12);
  CHECK(v.elements[2].text == "OK");
  CHECK(v.elements[3].text == "ab\r\nc");
  CHECK(v.elements[4].type == resp::value::kind::nil);
  CHECK(v.elements[5].elements.size() == 2);
  CHECK(v.elements[6].type == resp::value::kind::error);
  CHECK(v.elements[6].text == "ERR x y");
}

TEST_CASE("garbage is invalid, not a reply waiting for more bytes", "[resp]") {
  resp::value v;
  size_t used = 0;
  CHECK(resp::parse("?what\r\n", v, used) == resp::parse_status::invalid);
  CHECK(resp::parse(":12a\r\n", v, used) == resp::parse_status::invalid);
  CHECK(resp::parse("$3\r\nabcd\r\n", v, used) == resp::parse_status::invalid);
  CHECK(resp::parse("$-2\r\n", v, used) == resp::parse_status::invalid);
  CHECK(resp::parse("$999999999999\r\n", v, used) == resp::parse_status::invalid);
  CHECK(resp::parse("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", v, used) ==
        resp::parse_status::invalid);  // nested deeper than 8
  CHECK(resp::parse("+" + std::string(70000, 'x'), v, used) == resp::parse_status::invalid);
}
