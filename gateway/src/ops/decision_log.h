// The decision log: one JSON line per routed request (what the cascade decided, why, what it cost, the signals
// it read; prompt and answer text only when the route sets log_text), the raw material of the data flywheel
// (`sluice train-cascade --decision-log`). Lines are queued by the request path and written by a thread of
// its own, so a slow disk never delays an answer; the file rotates by size. When the queue is full (the disk
// cannot keep up) lines are dropped and counted, never waited for. What must not go in here: deciding.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "sluice/policies/policy.h"
#include "sluice/router/cascade.h"
#include "sluice/router/error.h"

namespace sluice::gateway {

// What the request path knows about a routed request besides the router's decision.
struct decision_context {
  std::string_view request_id;
  std::string_view endpoint;  // "chat" or "completions"
  bool stream = false;
  int http_status = 200;
  double latency_s = 0.0;
  std::optional<double> ttft_s;
  std::string_view response;  // the answer text served to the client (logged only with log_text)
};

// UTC now as 2026-12-01T23:59:59.123Z (the decision log's `time`).
std::string utc_now_iso8601();

// The JSON line (without the newline) for one routed request; documented in docs/cascade.md.
std::string decision_log_line(const router::route_decision& d, const decision_context& ctx);

class decision_log {
 public:
  // Opens (appends to) config.path, creating its folder; an error names the path.
  static router::result<std::unique_ptr<decision_log>> open(const policies::decision_log_config& config);
  ~decision_log();  // writes what is queued, then closes
  decision_log(const decision_log&) = delete;
  decision_log& operator=(const decision_log&) = delete;

  bool write(std::string line);  // never blocks on the disk; false when the line was dropped
  void close();                  // writes what is queued and stops the writer; later writes are dropped
  uint64_t dropped() const;
  uint64_t written() const;

 private:
  explicit decision_log(policies::decision_log_config config, std::FILE* file, uint64_t size);
  void run();
  void rotate();

  policies::decision_log_config config_;
  std::FILE* file_;
  uint64_t size_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool closing_ = false;
  uint64_t dropped_ = 0;
  uint64_t written_ = 0;
  std::thread writer_;
};

}  // namespace sluice::gateway
