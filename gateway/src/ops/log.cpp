// See log.h.
#include "ops/log.h"

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <string>

namespace sluice::gateway {

namespace {
std::atomic<int> threshold{static_cast<int>(policies::log_level::info)};
}  // namespace

void set_log_level(policies::log_level level) { threshold.store(static_cast<int>(level), std::memory_order_relaxed); }

bool log_enabled(policies::log_level level) {
  return static_cast<int>(level) >= threshold.load(std::memory_order_relaxed);
}

void log_line(policies::log_level level, const char* format, ...) {
  if (!log_enabled(level)) return;
  std::string line = "sluice: ";
  if (level == policies::log_level::warn) line += "warning: ";
  if (level == policies::log_level::error) line += "error: ";
  char buf[1024];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  if (n > 0) line.append(buf, static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace sluice::gateway
