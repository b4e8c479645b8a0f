// request_reader: a client's request read with Beast's parser into reused storage, and the framing facts the
// smuggling rules (PITFALLS.md) are decided from.
#include <catch2/catch.hpp>

#include <boost/beast/http/error.hpp>
#include <string>

#include "http/request_reader.h"

using namespace sluice::gateway;
namespace http = boost::beast::http;

namespace {

// Parses `wire` whole (eager, as the session does once the head is in); returns the framing problem, if any.
std::string read(const std::string& wire, incoming_request& req, boost::beast::error_code& ec) {
  request_reader r(req);
  r.eager(true);
  r.put(boost::asio::buffer(wire), ec);
  if (ec) return {};
  return std::string(framing_problem(r.framing(), req.version));
}

std::string problem_of(const std::string& head) {
  incoming_request req;
  boost::beast::error_code ec;
  const std::string problem = read(head, req, ec);
  REQUIRE_FALSE(ec);
  return problem;
}

}  // namespace

TEST_CASE("a request is read into the connection's storage", "[request_reader]") {
  incoming_request req;
  req.body = "left over from the previous request";
  boost::beast::error_code ec;
  const std::string wire =
      "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
  CHECK(read(wire, req, ec).empty());
  REQUIRE_FALSE(ec);
  CHECK(req.method == http::verb::post);
  CHECK(req.method_string() == "POST");
  CHECK(req.target == "/v1/chat/completions?x=1");
  CHECK(req.version == 11);
  CHECK(req.keep_alive);
  CHECK(req.expect_continue);
  CHECK(req.body == "hello");

  // The next request on the connection: nothing of the first one stays.
  CHECK(read("GET /healthz HTTP/1.0\r\n\r\n", req, ec).empty());
  REQUIRE_FALSE(ec);
  CHECK(req.method == http::verb::get);
  CHECK(req.version == 10);
  CHECK_FALSE(req.keep_alive);  // HTTP/1.0 without keep-alive
  CHECK_FALSE(req.expect_continue);
  CHECK(req.body.empty());
}

TEST_CASE("chunked request bodies are joined", "[request_reader]") {
  incoming_request req;
  boost::beast::error_code ec;
  CHECK(read("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", req, ec)
            .empty());
  REQUIRE_FALSE(ec);
  CHECK(req.body == "abcde");
}

TEST_CASE("the framing rules Beast does not enforce", "[request_reader]") {
  CHECK(problem_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok").empty());
  CHECK(problem_of("GET / HTTP/1.1\r\n\r\n") == "missing Host header");
  CHECK(problem_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == "repeated Host header");
  CHECK(problem_of("GET / HTTP/1.0\r\n\r\n").empty());  // (HTTP/1.0 needs no Host)
  CHECK(problem_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n") ==
        "unsupported Transfer-Encoding (only 'chunked' is accepted)");
  CHECK(problem_of("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\n\r\nok") ==
        "Content-Length must be a single decimal number");
  framing_facts chunked_10;
  chunked_10.transfer_encodings = 1;
  chunked_10.transfer_encoding = "chunked";
  CHECK(framing_problem(chunked_10, 10) == "Transfer-Encoding is not allowed in HTTP/1.0");
  framing_facts both;
  both.transfer_encodings = 1;
  both.content_lengths = 1;
  CHECK(framing_problem(both, 11) == "both Content-Length and Transfer-Encoding are present");
  framing_facts twice;
  twice.content_lengths = 2;
  twice.content_length = "5";
  twice.hosts = 1;
  CHECK(framing_problem(twice, 11) == "repeated Content-Length header");
  framing_facts te_twice;
  te_twice.transfer_encodings = 2;
  te_twice.transfer_encoding = "chunked";
  te_twice.hosts = 1;
  CHECK(framing_problem(te_twice, 11) == "repeated Transfer-Encoding header");
}

TEST_CASE("a body over the limit stops the read", "[request_reader]") {
  incoming_request req;
  request_reader r(req);
  r.eager(true);
  r.body_limit(4);
  boost::beast::error_code ec;
  const std::string wire = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
  r.put(boost::asio::buffer(wire), ec);
  CHECK(ec == http::error::body_limit);
}
