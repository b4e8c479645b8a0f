// See decision_log.h.
#include "ops/decision_log.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "api/json_util.h"
#include "ops/log.h"

namespace sluice::gateway {

namespace {
constexpr size_t max_queued_bytes = 16u << 20;  // past this the disk is not keeping up: drop, count
}  // namespace

std::string utc_now_iso8601() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

namespace {

void key(std::string& out, std::string_view k) {
  if (out.size() > 1) out += ',';
  append_json_string(out, k);
  out += ':';
}

// JSON has no infinities: a log-prob of -inf (a token the model gave no chance) is written as null.
void number_or_null(std::string& out, double v) {
  if (std::isfinite(v)) append_json_number(out, v);
  else out += "null";
}

void optional_number(std::string& out, std::string_view k, const std::optional<double>& v) {
  key(out, k);
  if (v) number_or_null(out, *v);
  else out += "null";
}

}  // namespace

std::string decision_log_line(const router::route_decision& d, const decision_context& ctx) {
  std::string out;
  out.reserve(512);
  out += '{';
  key(out, "time");
  append_json_string(out, utc_now_iso8601());
  key(out, "id");
  append_json_string(out, ctx.request_id);
  key(out, "route");
  append_json_string(out, d.route);
  key(out, "endpoint");
  append_json_string(out, ctx.endpoint);
  key(out, "stream");
  out += ctx.stream ? "true" : "false";
  key(out, "status");
  out += std::to_string(ctx.http_status);
  key(out, "decision");
  append_json_string(out, d.tier.empty() ? "failed" : d.served_after_failure ? "served_after_failure"
                                                     : d.escalated           ? "escalated"
                                                                             : "accepted");
  key(out, "reason");
  if (d.reason == router::escalation_reason::none) out += "null";
  else append_json_string(out, router::to_string(d.reason));
  key(out, "validator");
  if (d.validator.empty()) out += "null";
  else append_json_string(out, d.validator);
  optional_number(out, "pre_score", d.pre_score);
  optional_number(out, "acceptance_score", d.acceptance_score);
  optional_number(out, "threshold", d.threshold);
  key(out, "tier");
  if (d.tier.empty()) out += "null";
  else append_json_string(out, d.tier);
  key(out, "escalated");
  out += d.escalated ? "true" : "false";
  key(out, "attempts");
  out += '[';
  router::usage total;
  for (size_t i = 0; i < d.attempts.size(); ++i) {
    const router::attempt_record& a = d.attempts[i];
    if (i) out += ',';
    out += "{\"tier\":";
    append_json_string(out, a.tier);
    out += ",\"kind\":";
    append_json_string(out, a.kind);
    out += ",\"outcome\":";
    append_json_string(out, router::to_string(a.outcome));
    out += ",\"tokens_input\":" + std::to_string(a.usage_.tokens_input);
    out += ",\"tokens_cached\":" + std::to_string(a.usage_.tokens_cache_read);
    out += ",\"tokens_output\":" + std::to_string(a.usage_.tokens_output);
    out += ",\"cost_usd\":";
    append_json_number(out, a.cost_usd);
    out += ",\"seconds\":";
    append_json_number(out, a.seconds);
    if (a.score) {
      out += ",\"score\":";
      number_or_null(out, *a.score);
    }
    out += '}';
    total.tokens_input += a.usage_.tokens_input;
    total.tokens_output += a.usage_.tokens_output;
  }
  out += ']';
  key(out, "tokens_input");
  out += std::to_string(total.tokens_input);
  key(out, "tokens_output");
  out += std::to_string(total.tokens_output);
  key(out, "cost_usd");
  append_json_number(out, d.cost_usd);
  key(out, "baseline_cost_usd");
  append_json_number(out, d.baseline_cost_usd);
  key(out, "latency_s");
  append_json_number(out, ctx.latency_s);
  optional_number(out, "ttft_s", ctx.ttft_s);
  key(out, "routing_us");
  append_json_number(out, d.routing_seconds * 1e6);
  if (d.shadow) {
    const router::shadow_record& sh = *d.shadow;
    key(out, "shadow");
    out += "{\"tier\":";
    append_json_string(out, sh.tier);
    if (d.log_text) {
      out += ",\"answer\":";
      append_json_string(out, sh.answer);
    }
    out += ",\"confidence\":";
    number_or_null(out, sh.confidence);
    out += std::string(",\"would_answer\":") + (sh.would_answer ? "true" : "false");
    out += std::string(",\"agrees\":") + (sh.agrees ? "true" : "false");
    out += ",\"cost_usd\":";
    append_json_number(out, sh.cost_usd);
    out += '}';
  }
  if (d.log_text) {
    key(out, "query");
    append_json_string(out, d.query);
    if (!d.tier.empty()) {
      key(out, "response");
      append_json_string(out, ctx.response);
    }
  }
  if (d.signals) {
    // The acceptance model's inputs: numbers always, text only where the route allows it.
    const router::answer_signals& s = *d.signals;
    key(out, "finish_reason");
    append_json_string(out, router::to_string(s.finish));
    key(out, "token_logprobs");
    out += '[';
    for (size_t i = 0; i < s.token_logprobs.size(); ++i) {
      if (i) out += ',';
      number_or_null(out, s.token_logprobs[i]);
    }
    out += ']';
    key(out, "first_top_logprobs");
    out += '[';
    for (size_t i = 0; i < s.first_top_logprobs.size(); ++i) {
      if (i) out += ',';
      out += '[';
      if (d.log_text) append_json_string(out, s.first_top_logprobs[i].first);
      else out += "null";  // a token's text is text
      out += ',';
      number_or_null(out, s.first_top_logprobs[i].second);
      out += ']';
    }
    out += ']';
    if (d.log_text) {
      key(out, "answer");
      append_json_string(out, s.answer);
    }
  }
  out += '}';
  return out;
}

router::result<std::unique_ptr<decision_log>> decision_log::open(const policies::decision_log_config& config) {
  std::error_code ec;
  if (config.path == "-") {  // standard error: never rotated, never closed
    policies::decision_log_config to_stderr = config;
    to_stderr.max_bytes = UINT64_MAX;
    return std::unique_ptr<decision_log>(new decision_log(to_stderr, stderr, 0));
  }
  const std::filesystem::path p(config.path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  std::FILE* f = std::fopen(config.path.c_str(), "ae");
  if (!f) {
    return router::error{router::errc::internal,
                         "cannot open the log '" + config.path + "': " + std::strerror(errno)};
  }
  const uint64_t size = std::filesystem::file_size(p, ec);
  return std::unique_ptr<decision_log>(new decision_log(config, f, ec ? 0 : size));
}

decision_log::decision_log(policies::decision_log_config config, std::FILE* file, uint64_t size)
    : config_(std::move(config)), file_(file), size_(size) {
  writer_ = std::thread([this] { run(); });
}

decision_log::~decision_log() { close(); }

void decision_log::close() {
  {
    std::lock_guard lock(mutex_);
    if (closing_) return;
    closing_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (file_ && file_ != stderr) std::fclose(file_);
  if (file_ == stderr) std::fflush(stderr);
  file_ = nullptr;
}

bool decision_log::write(std::string line) {
  {
    std::lock_guard lock(mutex_);
    if (closing_ || queued_bytes_ + line.size() > max_queued_bytes) {
      ++dropped_;
      return false;
    }
    queued_bytes_ += line.size();
    queue_.push_back(std::move(line));
  }
  wake_.notify_one();
  return true;
}

uint64_t decision_log::dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

uint64_t decision_log::written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

void decision_log::run() {
  std::deque<std::string> batch;
  for (;;) {
    bool stop = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return closing_ || !queue_.empty(); });
      batch.swap(queue_);
      queued_bytes_ = 0;
      stop = closing_;
    }
    size_t n = 0;
    for (const std::string& line : batch) {
      if (size_ > 0 && size_ + line.size() + 1 > config_.max_bytes) rotate();
      if (!file_) break;
      std::fwrite(line.data(), 1, line.size(), file_);
      std::fputc('\n', file_);
      size_ += line.size() + 1;
      ++n;
    }
    if (file_) std::fflush(file_);
    {
      std::lock_guard lock(mutex_);
      written_ += n;
      dropped_ += batch.size() - n;
    }
    batch.clear();
    if (stop) {
      std::lock_guard lock(mutex_);
      if (queue_.empty()) return;
    }
  }
}

// path -> path.1 -> ... -> path.keep (the oldest is removed), then a fresh path.
void decision_log::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  const std::string& p = config_.path;
  if (config_.keep <= 0) {
    std::filesystem::remove(p, ec);
  } else {
    std::filesystem::remove(p + "." + std::to_string(config_.keep), ec);
    for (int i = config_.keep - 1; i >= 1; --i) {
      std::filesystem::rename(p + "." + std::to_string(i), p + "." + std::to_string(i + 1), ec);
    }
    std::filesystem::rename(p, p + ".1", ec);
  }
  file_ = std::fopen(p.c_str(), "ae");
  size_ = 0;
  if (!file_) log_line(policies::log_level::error, "cannot reopen the log '%s': %s", p.c_str(), std::strerror(errno));
}

}  // namespace sluice::gateway
