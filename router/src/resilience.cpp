// See resilience.h.
#include "sluice/router/resilience.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <random>

#include "recycling.h"

namespace sluice::router {

namespace {

double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

std::optional<double> number(std::string_view s) {
  double v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !(v >= 0)) return std::nullopt;
  return v;
}

// A breaker failure: the upstream is unhealthy (not: the request was bad, or the client left).
bool unhealthy(const error& e) { return e.code == errc::upstream_error || e.code == errc::upstream_timeout; }

}  // namespace

bool retry_same_model(const error& e) {
  return e.code == errc::upstream_error || e.code == errc::upstream_rate_limited;
}

bool try_fallback(const error& e) {
  return retry_same_model(e) || e.code == errc::upstream_timeout || e.code == errc::upstream_auth ||
         e.code == errc::overloaded;
}

std::optional<std::chrono::milliseconds> retry_delay(const policies::retry_config& c, int retry, const error& e,
                                                     double jitter01) {
  if (e.code == errc::upstream_rate_limited) {
    std::optional<double> ms;
    if (auto v = number(e.retry_after_ms)) ms = *v;
    else if (auto s = number(e.retry_after)) ms = *s * 1000.0;  // (an HTTP-date is not read: backoff applies)
    if (ms) {
      if (*ms > static_cast<double>(c.max_backoff.count())) return std::nullopt;
      return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(*ms)));
    }
  }
  const double cap = std::min(static_cast<double>(c.max_backoff.count()),
                              static_cast<double>(c.base.count()) * std::ldexp(1.0, std::min(retry, 30)));
  return std::chrono::milliseconds(static_cast<int64_t>(cap * jitter01));
}

bool circuit_breaker::allow(clock::time_point now) {
  const std::lock_guard lock(mutex_);
  if (!open_) return true;
  if (now < open_until_ || probing_) return false;
  probing_ = true;  // half open: this attempt is the probe
  return true;
}

bool circuit_breaker::on_result(bool failure, clock::time_point now) {
  const std::lock_guard lock(mutex_);
  const bool was_open = open_;
  probing_ = false;
  bool ratio_reached = false;
  if (!recent_.empty()) {
    recent_failures_ += int(failure) - int(recent_[recent_next_]);
    recent_[recent_next_] = failure ? 1 : 0;
    recent_next_ = (recent_next_ + 1) % recent_.size();
    recent_seen_ = std::min(recent_seen_ + 1, recent_.size());
    ratio_reached = recent_seen_ == recent_.size() &&
                    double(recent_failures_) >= config_.failure_ratio * double(recent_.size());
  }
  if (!failure) {
    consecutive_failures_ = 0;
    if (open_) {  // a successful probe: closed, with a clean history
      std::fill(recent_.begin(), recent_.end(), uint8_t{0});
      recent_next_ = recent_seen_ = 0;
      recent_failures_ = 0;
    }
    open_ = false;
  } else {
    ++consecutive_failures_;
    if (open_ || (config_.failures > 0 && consecutive_failures_ >= config_.failures) || ratio_reached) {
      open_ = true;  // (a failed probe opens it again for a whole period)
      open_until_ = now + config_.open_for;
    }
  }
  return was_open != open_;
}

circuit_breaker::state circuit_breaker::current(clock::time_point now) const {
  const std::lock_guard lock(mutex_);
  if (!open_) return state::closed;
  return now < open_until_ ? state::open : state::half_open;
}

namespace {

// One request on one model: attempts until one answers, a failure that may not be retried, or the retries
// run out. Never retries once a chunk went out.
class resilient_call final : public generation,
                             public generation_sink,
                             public std::enable_shared_from_this<resilient_call> {
 public:
  resilient_call(std::shared_ptr<resilient_backend> owner, std::shared_ptr<const chat_request> req,
                 const policies::model_config& model, std::shared_ptr<generation_sink> sink)
      : owner_(std::move(owner)), req_(std::move(req)), model_(model), sink_(std::move(sink)) {}

  // Starts the first attempt; an error here (the breaker is open, the backend refused at once) is returned.
  result<void> begin() {
    if (!admit()) return open_error();
    auto gen = owner_->inner().start(req_, model_, as_sink());  // (not finished yet: owner_ is set)
    if (!gen) {
      release_breaker();
      return gen.error();
    }
    const std::lock_guard lock(mu_);
    if (!finished_ && attempt_ == 0 && ended_ < 0) current_ = std::move(*gen);  // (it may have ended already)
    return {};
  }

  void cancel() override {
    std::shared_ptr<generation> running;
    std::shared_ptr<timer_handle> waiting;
    {
      const std::lock_guard lock(mu_);
      if (cancelled_ || finished_) return;
      cancelled_ = true;
      running = current_;
      waiting = std::move(wait_);
    }
    if (running) {
      running->cancel();  // its on_done finishes this call
    } else if (waiting) {
      waiting->cancel();
      finish(error{errc::cancelled, "The request was cancelled."});
    }
  }

 private:
  // Attempts run one after another (the next starts after the last one's on_done), so one sink serves them
  // all: this object (the cycle call -> generation -> sink is broken when the attempt ends).
  std::shared_ptr<generation_sink> as_sink() { return std::shared_ptr<generation_sink>(shared_from_this(), this); }
  void on_chunk(chunk c) override { on_attempt_chunk(std::move(c)); }
  void on_done(result<completion> r) override { on_attempt_done(std::move(r)); }
  void when_ready(std::function<void()> resume) override {
    std::shared_ptr<generation_sink> sink;
    {
      const std::lock_guard lock(mu_);
      sink = sink_;
    }
    if (sink) sink->when_ready(std::move(resume));
    else resume();
  }

  // The backend while the call runs (null once finished: a finished call holds nothing, so that a backend
  // keeping its generations, and they their sinks, makes no cycle).
  std::shared_ptr<resilient_backend> owner() {
    const std::lock_guard lock(mu_);
    return owner_;
  }
  bool admit() {
    auto o = owner();
    if (!o || !o->has_breaker()) return o != nullptr;
    return o->breaker().allow(circuit_breaker::clock::now());
  }
  void report(bool failure) {
    auto o = owner();
    if (!o || !o->has_breaker()) return;
    if (o->breaker().on_result(failure, circuit_breaker::clock::now())) {
      if (auto* obs = o->observer()) {
        obs->on_breaker(model_.name, o->breaker().current(circuit_breaker::clock::now()) !=
                                         circuit_breaker::state::closed);
      }
    }
  }
  void release_breaker() { report(false); }
  error open_error() const {
    return error{errc::overloaded, "The upstream of model '" + model_.name +
                                       "' is failing and its circuit breaker is open; retry later."};
  }

  void on_attempt_chunk(chunk c) {
    std::shared_ptr<generation_sink> sink;
    {
      const std::lock_guard lock(mu_);
      if (finished_) return;
      produced_ = true;
      sink = sink_;
    }
    sink->on_chunk(std::move(c));
  }

  void on_attempt_done(result<completion> r) {
    int retry = 0;
    {
      const std::lock_guard lock(mu_);
      if (finished_) return;
      current_.reset();
      retry = attempt_;
      ended_ = attempt_;
    }
    if (r) {
      report(false);
      finish(std::move(r));
      return;
    }
    const error& e = r.error();
    report(unhealthy(e));
    const auto o = owner();
    bool again = false;
    std::optional<std::chrono::milliseconds> delay;
    {
      const std::lock_guard lock(mu_);
      again = o && !cancelled_ && !produced_ && retry < o->retries().max_retries && retry_same_model(e) &&
              o->timers() != nullptr;
    }
    if (again) delay = retry_delay(o->retries(), retry, e, jitter());
    if (!again || !delay) {
      error out = e;
      if (retry > 0) out.message += " (after " + std::to_string(retry + 1) + " attempts)";
      finish(std::move(out));
      return;
    }
    if (auto* obs = o->observer()) obs->on_retry(model_.name, e);
    auto self = shared_from_this();
    auto handle = o->timers()->after(*delay, [self, e] { self->retry(e); });
    const std::lock_guard lock(mu_);
    if (!finished_) wait_ = std::move(handle);
  }

  void retry(const error& last) {
    int n = 0;
    bool cancelled = false;
    {
      const std::lock_guard lock(mu_);
      if (finished_) return;
      cancelled = cancelled_;
      wait_.reset();
      n = ++attempt_;
    }
    if (cancelled) {  // (cancel() may have run before the wait was registered)
      finish(error{errc::cancelled, "The request was cancelled."});
      return;
    }
    if (!admit()) {
      error e = open_error();
      e.message += " Last failure: " + last.message;
      finish(std::move(e));
      return;
    }
    const auto o = owner();
    if (!o) return;  // finished meanwhile
    auto gen = o->inner().start(req_, model_, as_sink());
    if (!gen) {
      release_breaker();
      finish(std::move(gen.error()));
      return;
    }
    bool cancel_now = false;
    {
      const std::lock_guard lock(mu_);
      if (!finished_ && attempt_ == n && ended_ < n) {
        current_ = *gen;
        cancel_now = cancelled_;  // cancel() ran between the attempt's start and here
      }
    }
    if (cancel_now) (*gen)->cancel();
  }

  void finish(result<completion> r) {
    std::shared_ptr<generation_sink> sink;
    std::shared_ptr<resilient_backend> owner;
    {
      const std::lock_guard lock(mu_);
      if (finished_) return;
      finished_ = true;
      current_.reset();
      wait_.reset();
      sink = std::move(sink_);
      owner = std::move(owner_);
    }
    sink->on_done(std::move(r));
  }

  std::shared_ptr<resilient_backend> owner_;
  std::shared_ptr<const chat_request> req_;
  const policies::model_config& model_;
  std::shared_ptr<generation_sink> sink_;
  std::mutex mu_;
  int attempt_ = 0;
  int ended_ = -1;  // the last attempt whose on_done came (a backend may answer inside start())
  bool produced_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
  std::shared_ptr<generation> current_;
  std::shared_ptr<timer_handle> wait_;
};

}  // namespace

resilient_backend::resilient_backend(std::shared_ptr<backend> inner, const policies::model_config& model,
                                     std::shared_ptr<timer_service> timers,
                                     std::shared_ptr<resilience_observer> observer)
    : inner_(std::move(inner)),
      retries_(model.retries),
      breaker_enabled_(model.breaker.enabled()),
      breaker_(model.breaker),
      timers_(std::move(timers)),
      observer_(std::move(observer)) {}

result<std::shared_ptr<generation>> resilient_backend::start(std::shared_ptr<const chat_request> req,
                                                             const policies::model_config& model,
                                                             std::shared_ptr<generation_sink> sink) {
  auto call = detail::make_recycled<resilient_call>(shared_from_this(), std::move(req), model, std::move(sink));
  if (auto started = call->begin(); !started) return started.error();
  return std::shared_ptr<generation>(std::move(call));
}

}  // namespace sluice::router
