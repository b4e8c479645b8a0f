// A small Redis client for the io threads: one command at a time per connection, connections pooled per io
// thread (no lock; io_threads.h), each call bounded by a timeout that covers connecting, AUTH/SELECT, writing
// and reading. Calls run on the calling io thread. What must not go in here: what the commands mean
// (redis_limits.cpp), blocking calls.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "access/resp.h"
#include "http/executor.h"

namespace sluice::gateway {

struct redis_options {
  std::string host;
  uint16_t port = 6379;
  int db = 0;
  std::string password;  // "" = no AUTH
  std::chrono::milliseconds timeout{250};
  size_t max_idle_per_thread = 32;
};

struct redis_reply {
  bool ok = false;        // a reply arrived (it may still be a Redis error: value.type == kind::error)
  resp::value value;
  std::string error;      // when !ok: what went wrong (connect, timeout, protocol), for logs
};

class redis_client {
 public:
  redis_client(redis_options opts, size_t io_thread_count);
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  // Sends `command` (one RESP-encoded command, resp::append_command) and reads its reply.
  task<redis_reply> call(std::string command);

  const redis_options& options() const { return opts_; }

 private:
  class connection;
  task<std::unique_ptr<connection>> connect(io_executor ex, std::chrono::steady_clock::time_point deadline,
                                            std::string& error);
  redis_options opts_;
  std::vector<std::vector<std::unique_ptr<connection>>> idle_;  // per io thread
};

}  // namespace sluice::gateway
