// response_reader: the upstream answer's framing, fed whole and byte by byte, and compared with Beast's parser
// (the oracle: whatever Beast refuses, the reader refuses; whatever the reader accepts, Beast reads the same).
#include <catch2/catch.hpp>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <string>
#include <vector>

#include "http/response_reader.h"

using namespace sluice::gateway;
namespace http = boost::beast::http;

namespace {

struct outcome {
  bool ok = false;
  boost::beast::error_code ec;
  int status = 0;
  std::string body;
  bool keep_alive = false;
  std::string retry_after, retry_after_ms;
};

// Feeds `wire` in pieces of `step` bytes (0: all at once), as the upstream call does: unconsumed bytes are kept
// and fed again with the next piece; `eof` ends the connection after the last byte.
outcome read(const std::string& wire, size_t step = 0, bool eof = false) {
  outcome o;
  std::string body;
  response_reader r;
  std::string pending;
  size_t at = 0;
  while (!r.done()) {
    const size_t n = step == 0 ? wire.size() - at : std::min(step, wire.size() - at);
    pending.append(wire, at, n);
    at += n;
    for (;;) {
      const bool had_head = r.head_done();
      const size_t used = r.put(pending, o.ec);
      pending.erase(0, used);
      if (o.ec) return o;
      if (!had_head && r.head_done()) {
        r.set_body(&body);
        continue;
      }
      if (used == 0 || r.done() || pending.empty()) break;
    }
    if (r.done()) break;
    if (at == wire.size()) {
      if (!eof) {
        o.ec = http::error::need_more;
        return o;
      }
      r.put_eof(o.ec);
      if (o.ec) return o;
      break;
    }
  }
  o.ok = true;
  o.status = r.status();
  o.body = body;
  o.keep_alive = r.keep_alive();
  o.retry_after = std::string(r.retry_after());
  o.retry_after_ms = std::string(r.retry_after_ms());
  return o;
}

// Beast's reading of the same bytes.
outcome beast_read(const std::string& wire, bool eof = false) {
  outcome o;
  http::response_parser<http::string_body> p;
  p.eager(true);
  boost::beast::error_code ec;
  size_t used = p.put(boost::asio::buffer(wire), ec);
  if (ec == http::error::need_more) ec = {};
  if (!ec && !p.is_done() && used < wire.size()) {
    p.put(boost::asio::buffer(wire.data() + used, wire.size() - used), ec);
    if (ec == http::error::need_more) ec = {};
  }
  if (!ec && !p.is_done() && eof) p.put_eof(ec);
  if (!ec && !p.is_done()) ec = http::error::need_more;
  o.ec = ec;
  if (ec) return o;
  o.ok = true;
  o.status = p.get().result_int();
  o.body = p.get().body();
  o.keep_alive = p.keep_alive();
  return o;
}

const std::string json = R"({"id":"x","object":"chat.completion","choices":[]})";

std::string with_length(std::string head_fields, const std::string& body) {
  return "HTTP/1.1 200 OK\r\n" + head_fields + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

}  // namespace

TEST_CASE("an answer framed by Content-Length, whole or byte by byte", "[response_reader]") {
  const std::string wire = with_length("Server: nginx\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n", json);
  for (size_t step : {size_t{0}, size_t{1}, size_t{7}, size_t{64}}) {
    const outcome o = read(wire, step);
    REQUIRE(o.ok);
    CHECK(o.status == 200);
    CHECK(o.body == json);
    CHECK(o.keep_alive);
  }
}

TEST_CASE("chunked answers, with extensions and trailers", "[response_reader]") {
  const std::string wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (size_t step : {size_t{0}, size_t{1}, size_t{3}}) {
    const outcome o = read(wire, step);
    REQUIRE(o.ok);
    CHECK(o.body == "helloabcdefghijklmnopqrstuvwxyz");
    CHECK(o.keep_alive);
  }
}

TEST_CASE("keep-alive follows the version, Connection and the framing", "[response_reader]") {
  CHECK_FALSE(read(with_length("Connection: close\r\n", json)).keep_alive);
  CHECK_FALSE(read("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").keep_alive);
  CHECK(read("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok").keep_alive);
  // Framed by the end of the connection: read to the end, never kept.
  const outcome eof = read("HTTP/1.1 200 OK\r\n\r\nuntil the end", 0, true);
  REQUIRE(eof.ok);
  CHECK(eof.body == "until the end");
  CHECK_FALSE(eof.keep_alive);
  const outcome coding = read("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", 0, true);
  REQUIRE(coding.ok);
  CHECK_FALSE(coding.keep_alive);
}

TEST_CASE("answers without a body", "[response_reader]") {
  for (const char* wire : {"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "HTTP/1.1 304 Not Modified\r\n\r\n"}) {
    const outcome o = read(wire);
    REQUIRE(o.ok);
    CHECK(o.body.empty());
    CHECK(o.keep_alive);
  }
  const outcome zero = read(with_length("", ""));
  REQUIRE(zero.ok);
  CHECK(zero.body.empty());
}

TEST_CASE("the fields the gateway relays are kept", "[response_reader]") {
  const outcome o = read("HTTP/1.1 429 Too Many Requests\r\nretry-after: 3\r\nRetry-After-Ms: 2500\r\nContent-Length: 0\r\n\r\n");
  REQUIRE(o.ok);
  CHECK(o.status == 429);
  CHECK(o.retry_after == "3");
  CHECK(o.retry_after_ms == "2500");
}

TEST_CASE("malformed answers are errors", "[response_reader]") {
  auto error_of = [](const std::string& wire) {
    const outcome o = read(wire, 0, true);
    CHECK_FALSE(o.ok);
    return o.ec;
  };
  CHECK(error_of("HTTP/1.1 200 OK\nContent-Length: 0\n\n") == http::error::bad_line_ending);
  CHECK(error_of("HTTP/1.1 200 OK\nX: y\r\nContent-Length: 0\r\n\r\n") == http::error::bad_line_ending);
  CHECK(error_of("HTTP/1.1 200 OK\r\nX: y\nContent-Length: 0\r\n\r\n") == http::error::bad_line_ending);
  CHECK(error_of("HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 0\r\n\r\n") == http::error::bad_value);  // a lone CR
  CHECK(error_of("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n") == http::error::bad_field);  // obs-fold
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello") == http::error::bad_content_length);
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello") ==
        http::error::bad_content_length);
  CHECK(error_of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") ==
        http::error::bad_transfer_encoding);
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n") ==
        http::error::bad_transfer_encoding);
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") == http::error::bad_chunk);
  CHECK(error_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n") == http::error::bad_chunk);
  CHECK(error_of("HTTP/1.1 200 OK\r\nX-Bad: a\x01z\r\nContent-Length: 0\r\n\r\n") == http::error::bad_value);
  CHECK(error_of("HTTP/1.1 200 OK\r\nBad Name: v\r\nContent-Length: 0\r\n\r\n") == http::error::bad_field);
  CHECK(error_of("HTTP/2.0 200 OK\r\n\r\n") == http::error::bad_version);
  CHECK(error_of("HTTP/1.1 20x OK\r\n\r\n") == http::error::bad_status);
  CHECK(error_of(with_length("", json).substr(0, 60)) == http::error::partial_message);  // cut in the body
  CHECK(error_of("") == http::error::end_of_stream);
  CHECK(error_of("HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'a')) == http::error::header_limit);
}

TEST_CASE("a body over the limit is an error", "[response_reader]") {
  std::string body;
  response_reader r;
  boost::beast::error_code ec;
  const std::string wire = with_length("", json);
  const size_t used = r.put(wire, ec);
  REQUIRE(r.head_done());
  r.set_body(&body, 10);
  r.put(std::string_view(wire).substr(used), ec);
  CHECK(ec == http::error::body_limit);
}

TEST_CASE("the reader agrees with Beast on what it accepts", "[response_reader]") {
  const std::vector<std::pair<std::string, bool>> cases = {  // (wire, ends with the connection)
      {with_length("Server: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 00:00:00 GMT\r\nContent-Type: application/json\r\n"
                   "Connection: keep-alive\r\n",
                   json),
       false},
      {with_length("Connection: close\r\n", "x"), false},
      {"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nerror", false},
      {"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
       "f\r\ndata: {\"a\":1}\n\n\r\n10\r\ndata: [DONE]\n\n  \r\n0\r\n\r\n",
       false},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n", false},
      {"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nread until the end", true},
      {"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", false},
      {"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: keep-alive, x-other\r\n\r\n", false},
      {"HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Spaces:   padded   \r\nContent-Length: 1\r\n\r\nz", false},
  };
  for (const auto& [wire, eof] : cases) {
    INFO(wire);
    const outcome mine = read(wire, 0, eof);
    const outcome beast = beast_read(wire, eof);
    REQUIRE(mine.ok);
    REQUIRE(beast.ok);
    CHECK(mine.status == beast.status);
    CHECK(mine.body == beast.body);
    CHECK(mine.keep_alive == beast.keep_alive);
    for (size_t step : {size_t{1}, size_t{5}, size_t{13}}) {
      const outcome pieces = read(wire, step, eof);
      REQUIRE(pieces.ok);
      CHECK(pieces.body == beast.body);
    }
  }
  // What Beast refuses, the reader refuses too.
  const std::vector<std::string> refused = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\ng\r\n",
      "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
      "HTTP/1.1 2000 OK\r\n\r\n",
      "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
  };
  for (const std::string& wire : refused) {
    INFO(wire);
    CHECK_FALSE(beast_read(wire, true).ok);
    CHECK_FALSE(read(wire, 0, true).ok);
  }
}
