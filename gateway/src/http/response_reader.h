// Reads an HTTP/1.1 response from an upstream: the status line, the head's fields (keeping only the ones the
// gateway uses) and the body's framing (Content-Length, chunked, or the end of the connection), fed in pieces
// as they arrive. Written by hand because Beast's parser spends ~500 instructions per header field (callgrind,
// docs/benchmarks.md "Proxy") and real upstreams send twenty of them; this one finds each line with memchr and
// looks at a field only by its name. It is at least as strict as Beast where it matters to a client: a line
// must end in CRLF, obs-fold and control characters are errors, conflicting lengths are errors, and an answer
// framed by the end of the connection (or by a Transfer-Encoding it cannot read) is never kept alive, so a
// pooled connection cannot carry a wrong answer's tail into the next call. What must not go in here: what the
// answer means (upstream/ reads the body).
#pragma once

#include <boost/beast/core/error.hpp>
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::gateway {

class response_reader {
 public:
  // The body goes into `*body` (appended), once the head is in; see set_body.
  explicit response_reader(std::string* body = nullptr) : body_(body) {}

  // Where the body goes from now on (a body already received stays where it went). `limit`: the most bytes it
  // may grow to (body_limit past that).
  void set_body(std::string* body, size_t limit = SIZE_MAX) {
    body_ = body;
    limit_ = limit;
  }

  // Feeds bytes; returns how many were used (the rest: the caller keeps them and feeds them again with more).
  // Errors are Beast's http::error codes (bad_status, bad_field, bad_value, bad_line_ending, bad_content_length,
  // bad_transfer_encoding, bad_chunk, header_limit, body_limit); "need more input" is not an error.
  size_t put(std::string_view bytes, boost::beast::error_code& ec);
  // The connection ended: completes an answer framed by it; otherwise http::error::partial_message (or
  // end_of_stream when nothing came at all).
  void put_eof(boost::beast::error_code& ec);

  bool got_some() const { return got_some_; }
  bool head_done() const { return state_ > state::head; }
  bool done() const { return state_ == state::done; }
  int status() const { return status_; }
  // Whether the connection can carry the next request once this answer is read (HTTP/1.1 without
  // "Connection: close", HTTP/1.0 with "keep-alive"; never for an answer framed by the connection's end).
  bool keep_alive() const;
  std::string_view retry_after() const { return retry_after_; }
  std::string_view retry_after_ms() const { return retry_after_ms_; }

  static constexpr size_t max_head_bytes = 64 * 1024;

 private:
  enum class state { head, body_length, chunk_size, chunk_data, chunk_data_end, trailers, body_to_eof, done };

  // Parses the head at the start of `bytes`; returns its size through the blank line, or 0 while it is
  // incomplete (nothing kept: it is parsed again, whole, with more bytes) or on an error.
  size_t parse_head(std::string_view bytes, boost::beast::error_code& ec);
  void field(std::string_view name, std::string_view value, boost::beast::error_code& ec);
  bool append(std::string_view bytes, boost::beast::error_code& ec);

  std::string* body_;
  size_t limit_ = SIZE_MAX;
  state state_ = state::head;
  bool got_some_ = false;
  int status_ = 0;
  int version_ = 11;
  bool close_ = false;          // "Connection: close"
  bool keep_alive_token_ = false;  // "Connection: keep-alive"
  bool has_length_ = false;
  bool chunked_ = false;
  bool other_coding_ = false;   // a Transfer-Encoding whose last coding is not chunked: read to the end
  bool eof_framed_ = false;     // the body ended with the connection
  uint64_t remaining_ = 0;      // of the body (Content-Length) or of the current chunk
  std::string retry_after_;
  std::string retry_after_ms_;
};

}  // namespace sluice::gateway
