// See cascade_run.h.
#include "cascade_run.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "sluice/router/router.h"
#include "validators.h"

namespace sluice::router::detail {

namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// One attempt's callbacks, tagged with its number so that a late callback of an abandoned attempt is ignored.
class attempt_sink final : public generation_sink {
 public:
  attempt_sink(std::shared_ptr<cascade_run> run, uint64_t attempt) : run_(std::move(run)), attempt_(attempt) {}
  void on_chunk(chunk c) override {
    if (run_) run_->post_chunk(attempt_, std::move(c));
  }
  void on_done(result<completion> r) override {
    auto run = std::move(run_);  // the backend may keep the sink; it must not keep the run
    if (run) run->post_done(attempt_, std::move(r));
  }
  void when_ready(std::function<void()> resume) override {
    if (run_) run_->post_ready(attempt_, std::move(resume));
    else resume();
  }

 private:
  std::shared_ptr<cascade_run> run_;
  uint64_t attempt_;
};

size_t prompt_chars(const chat_request& req) {
  if (req.format == wire_format::openai_completions) return req.prompt.size();
  size_t n = 0;
  for (const message& m : req.messages) n += m.content.size();
  return n;
}

void trim_logprobs(std::vector<token_logprob>& lps, const chat_request& client) {
  if (!client.logprobs) {
    lps.clear();
    return;
  }
  for (token_logprob& lp : lps) {
    if (lp.top.size() > size_t(client.top_logprobs)) lp.top.resize(size_t(client.top_logprobs));
  }
}

}  // namespace

cascade_run::cascade_run(std::shared_ptr<const compiled_route> route, std::shared_ptr<const policies::policy> policy,
                         std::shared_ptr<const chat_request> req, std::shared_ptr<generation_sink> out,
                         std::shared_ptr<timer_service> timers, std::shared_ptr<resilience_observer> observer)
    : route_(std::move(route)), policy_(std::move(policy)), req_(std::move(req)), out_(std::move(out)),
      timers_(std::move(timers)), observer_(std::move(observer)) {
  decision_.route = route_->config->name;
  decision_.log_text = route_->config->log_text;
  if (decision_.log_text) decision_.query = query_text(*req_);
}

void cascade_run::begin() {
  queue_.post([self = shared_from_this()] {
    self->started_at_ = clock::now();
    const auto& cfg = *self->route_->config;
    const auto timeout = cfg.timeout.count() > 0 ? cfg.timeout : self->policy_->server.request_timeout;
    if (self->timers_) {
      std::weak_ptr<cascade_run> weak = self;
      self->route_timer_ = self->timers_->after(timeout, [weak] {
        if (auto s = weak.lock()) s->queue_.post([s] { s->on_route_timeout(); });
      });
    }
    bool skip_first = false;
    const auto t0 = clock::now();
    self->decision_.pre_score = self->pre_score(skip_first);
    self->decision_.routing_seconds += seconds_between(t0, clock::now());
    if (skip_first) {
      self->decision_.escalated = true;
      self->decision_.reason = escalation_reason::pre_score;
      self->start_attempt(1);
    } else {
      self->start_attempt(0);
    }
  });
}

void cascade_run::cancel() {
  queue_.post([self = shared_from_this()] {
    if (self->done_ || self->cancelled_) return;
    self->cancelled_ = true;
    if (self->current_) self->current_->cancel();  // its on_done finishes the run
  });
}

void cascade_run::post_chunk(uint64_t attempt, chunk c) {
  queue_.post([self = shared_from_this(), attempt, c = std::move(c)]() mutable { self->on_chunk(attempt, std::move(c)); });
}

// Flow control, in order with the chunks: a tier streaming through to the client waits for the client's queue;
// a judged tier's output is buffered here (bounded by local_max_tokens), so it never waits.
void cascade_run::post_ready(uint64_t attempt, std::function<void()> resume) {
  queue_.post([self = shared_from_this(), attempt, resume = std::move(resume)]() mutable {
    if (attempt != self->attempt_ || self->done_ || self->judged(self->tier_)) {
      resume();
      return;
    }
    self->out_->when_ready(std::move(resume));
  });
}

void cascade_run::post_done(uint64_t attempt, result<completion> r) {
  queue_.post([self = shared_from_this(), attempt, r = std::move(r)]() mutable { self->on_done(attempt, std::move(r)); });
}

std::optional<double> cascade_run::pre_score(bool& skip_first) {
  const policies::pre_score_config& ps = route_->config->pre_score;
  std::optional<double> score;
  if (route_->pre_classifier) {
    score = route_->pre_classifier->score(*req_);
    if (*score > ps.skip_local_above) skip_first = true;
  }
  if (ps.max_prompt_chars > 0 && int64_t(prompt_chars(*req_)) > ps.max_prompt_chars) skip_first = true;
  return score;
}

std::shared_ptr<const chat_request> cascade_run::attempt_request(size_t tier,
                                                                 const policies::model_config& model) const {
  if (!judged(tier)) return req_;  // the last tier gets the client's request as it came
  auto r = std::make_shared<chat_request>(*req_);
  const int cap = route_->config->local_max_tokens;
  r->max_output_tokens = std::min(req_->max_output_tokens.value_or(cap), cap);
  if (model.kind == policies::model_kind::local && route_->wants_logprobs) {
    r->logprobs = true;  // the acceptance decision reads them whether or not the client asked
    r->top_logprobs = std::max(req_->top_logprobs, route_->top_logprobs);
  }
  return r;
}

void cascade_run::start_attempt(size_t tier, size_t alt) {
  tier_ = tier;
  alt_ = alt;
  ++attempt_;
  buffered_.clear();
  tier_timed_out_ = false;
  attempt_started_at_ = clock::now();
  if (cancelled_ || route_timed_out_) {
    finish(error{cancelled_ ? errc::cancelled : errc::upstream_timeout,
                 cancelled_ ? "The client cancelled the request." : "The route's deadline passed."});
    return;
  }
  const policies::model_config& model = current_model();
  if (!judged(tier)) {
    decision_.tier = model.name;  // what serves, unless it fails and the route falls back
    emit_decision();
  }
  auto sink = std::make_shared<attempt_sink>(shared_from_this(), attempt_);
  backend& serving = alt == 0 ? *route_->backends[tier] : *route_->fallbacks[tier][alt - 1].serving;
  auto gen = serving.start(attempt_request(tier, model), model, sink);
  if (!gen) {
    post_done(attempt_, gen.error());  // handled like any failure, after this function returns
    return;
  }
  current_ = std::move(*gen);
  const auto tier_timeout = route_->config->tier_timeout;
  if (timers_ && tier_timeout.count() > 0) {
    std::weak_ptr<cascade_run> weak = shared_from_this();
    const uint64_t attempt = attempt_;
    tier_timer_ = timers_->after(tier_timeout, [weak, attempt] {
      if (auto s = weak.lock()) s->queue_.post([s, attempt] { s->on_tier_timeout(attempt); });
    });
  }
}

void cascade_run::on_chunk(uint64_t attempt, chunk c) {
  if (attempt != attempt_ || done_) return;
  if (judged(tier_)) {
    buffered_.push_back(std::move(c));  // bounded: the attempt's output is capped at local_max_tokens
    return;
  }
  forwarded_ = true;
  out_->on_chunk(std::move(c));
}

void cascade_run::on_done(uint64_t attempt, result<completion> r) {
  if (attempt != attempt_ || done_) return;
  if (tier_timer_) tier_timer_->cancel();
  current_.reset();
  backend_seconds_ += seconds_between(attempt_started_at_, clock::now());
  const usage used = r ? r->usage_ : usage{};
  if (cancelled_ || route_timed_out_) {
    record_attempt(attempt_outcome::cancelled, used);
    finish(error{cancelled_ ? errc::cancelled : errc::upstream_timeout,
                 cancelled_ ? "The client cancelled the request."
                            : "The route '" + decision_.route + "' did not finish within its deadline."});
    return;
  }
  const policies::model_config& model = current_model();
  const bool local = model.kind == policies::model_kind::local;
  if (judged(tier_)) {
    if (!r) {
      // A tier that reports its own timeout (a model's timeout_ms) escalates as a timeout, like tier_timeout_ms.
      const bool timed_out = r.error().code == errc::upstream_timeout;
      if (try_alternative(r.error(), timed_out ? attempt_outcome::timed_out : attempt_outcome::failed, used)) return;
      const escalation_reason why = local ? (timed_out ? escalation_reason::local_timeout : escalation_reason::local_error)
                                          : (timed_out ? escalation_reason::upstream_timeout : escalation_reason::upstream_error);
      escalate(why, timed_out ? attempt_outcome::timed_out : attempt_outcome::failed, used);
      return;
    }
    judge(std::move(*r));
    return;
  }
  if (!r) {
    error e = std::move(r.error());
    if (tier_timed_out_) {
      e = error{errc::upstream_timeout, "The model '" + model.name + "' did not answer within the route's tier timeout."};
    }
    const attempt_outcome outcome = tier_timed_out_ ? attempt_outcome::timed_out : attempt_outcome::failed;
    if (!tier_timed_out_ && try_alternative(e, outcome, used)) return;  // (a tier out of time moves on)
    record_attempt(outcome, used);
    last_tier_failed(std::move(e));
    return;
  }
  record_attempt(attempt_outcome::served, used);
  decision_.tier = model.name;
  finish(std::move(*r));
}

// The tier's next fallback in its place, when the failure is one another model may not share and nothing of the
// tier reached the client; the failed attempt is recorded (and charged) as its own model.
bool cascade_run::try_alternative(const error& e, attempt_outcome outcome, const usage& used) {
  const auto& alternatives = route_->fallbacks[tier_];
  if (alt_ >= alternatives.size() || forwarded_ || !try_fallback(e)) return false;
  const std::string& from = current_model().name;
  record_attempt(outcome, used);
  if (observer_) observer_->on_fallback(from, alternatives[alt_].model->name, e);
  start_attempt(tier_, alt_ + 1);
  return true;
}

void cascade_run::on_tier_timeout(uint64_t attempt) {
  if (attempt != attempt_ || done_ || !current_) return;
  tier_timed_out_ = true;
  if (!judged(tier_)) {
    current_->cancel();  // its on_done reports the timeout
    return;
  }
  // A judged attempt is abandoned at once: its late callbacks are stale once the next attempt starts.
  current_->cancel();
  current_.reset();
  backend_seconds_ += seconds_between(attempt_started_at_, clock::now());
  const bool local = current_model().kind == policies::model_kind::local;
  escalate(local ? escalation_reason::local_timeout : escalation_reason::upstream_timeout, attempt_outcome::timed_out,
           usage{});
}

void cascade_run::on_route_timeout() {
  if (done_ || route_timed_out_) return;
  route_timed_out_ = true;
  if (current_) current_->cancel();  // its on_done finishes the run with a timeout
}

void cascade_run::judge(completion c) {
  const auto t0 = clock::now();
  const policies::model_config& model = current_model();
  const std::string failed = failed_validator(*route_, *req_, c);
  bool accepted = failed.empty();
  std::optional<double> score, threshold;
  if (c.confidence && c.confidence_threshold) {
    // A tier that judges itself (a task tier): its confidence against the threshold it was trained for.
    score = *c.confidence;
    threshold = *c.confidence_threshold;
    accepted = accepted && *score >= *threshold;
  } else if (model.kind == policies::model_kind::local) {
    answer_signals s;
    s.query = query_text(*req_);
    s.answer = c.text;
    s.finish = c.finish;
    s.token_logprobs.reserve(c.logprobs.size());
    for (const token_logprob& lp : c.logprobs) s.token_logprobs.push_back(lp.logprob);
    if (!c.logprobs.empty()) s.first_top_logprobs = c.logprobs.front().top;
    s.pre_score = decision_.pre_score;
    const policies::accept_config& rule = route_->config->accept;
    // The acceptance model and rule judge the model they were set up for, not a fallback standing in for it.
    const bool scored = tier_ == route_->scored_tier && alt_ == 0;
    if (scored && route_->scorer) {
      score = route_->scorer->score(s);
      threshold = route_->threshold;
      accepted = accepted && *score >= *threshold;
    } else if (scored && rule.min_mean_logprob) {
      double sum = 0.0;
      for (double lp : s.token_logprobs) sum += lp;
      const double mean = s.token_logprobs.empty() ? -INFINITY : sum / double(s.token_logprobs.size());
      score = std::exp(mean);  // the geometric mean token probability, in [0, 1]
      threshold = std::exp(*rule.min_mean_logprob);
      accepted = accepted && mean >= *rule.min_mean_logprob;
    }
    decision_.signals = std::move(s);
  }
  // The route-level acceptance score is the acceptance model's (or rule's), on the local tier it judges; a task
  // tier's confidence is in its attempt's score only.
  if (score && tier_ == route_->scored_tier && alt_ == 0 && !(c.confidence && c.confidence_threshold)) {
    decision_.acceptance_score = score;
    decision_.threshold = threshold;
  }
  decision_.routing_seconds += seconds_between(t0, clock::now());
  if (accepted) {
    accept(std::move(c), score);
    return;
  }
  const usage used = c.usage_;
  rejected_ = std::move(c);
  rejected_chunks_ = std::move(buffered_);
  rejected_tier_ = model.name;
  if (!failed.empty()) {
    if (decision_.validator.empty()) decision_.validator = failed;
    escalate(escalation_reason::validator, attempt_outcome::rejected, used, score);
  } else {
    escalate(escalation_reason::low_confidence, attempt_outcome::rejected, used, score);
  }
}

void cascade_run::accept(completion c, std::optional<double> score) {
  record_attempt(attempt_outcome::served, c.usage_, score);
  decision_.tier = current_model().name;
  emit_decision();
  for (chunk& ch : buffered_) out_->on_chunk(for_client(std::move(ch)));
  buffered_.clear();
  trim_logprobs(c.logprobs, *req_);
  finish(std::move(c));
}

void cascade_run::escalate(escalation_reason reason, attempt_outcome outcome, const usage& used,
                           std::optional<double> score) {
  record_attempt(outcome, used, score);
  if (!decision_.escalated) {
    decision_.escalated = true;
    decision_.reason = reason;
  }
  start_attempt(tier_ + 1);
}

void cascade_run::last_tier_failed(error e) {
  if (route_->config->on_escalation_failure == policies::escalation_failure::serve_local && rejected_ && !forwarded_) {
    decision_.served_after_failure = true;
    decision_.tier = rejected_tier_;
    emit_decision();
    for (chunk& ch : rejected_chunks_) out_->on_chunk(for_client(std::move(ch)));
    rejected_chunks_.clear();
    completion c = std::move(*rejected_);
    rejected_.reset();
    trim_logprobs(c.logprobs, *req_);
    finish(std::move(c));
    return;
  }
  finish(std::move(e));
}

void cascade_run::record_attempt(attempt_outcome outcome, const usage& used, std::optional<double> score) {
  const policies::model_config& model = current_model();
  attempt_record a;
  a.tier = model.name;
  a.kind = policies::to_string(model.kind);
  a.outcome = outcome;
  a.usage_ = used;
  a.cost_usd = cost_usd(used, model.price);
  a.seconds = seconds_between(attempt_started_at_, clock::now());
  a.score = score;
  decision_.attempts.push_back(std::move(a));
}

chunk cascade_run::for_client(chunk c) const {
  trim_logprobs(c.logprobs, *req_);
  return c;
}

// The shadow tier (a task tier: it answers synchronously, in microseconds) on a sample of the route's requests:
// what it would have answered, whether that agrees with what was served, what it would have cost.
void cascade_run::run_shadow(const completion& served) {
  const double sample = route_->config->shadow.sample;
  if (!route_->shadow_backend || sample <= 0.0) return;
  const uint64_t h = std::hash<std::string>{}(req_->request_id);
  if (sample < 1.0 && double(h % 1'000'000) >= sample * 1e6) return;
  struct capture final : generation_sink {
    std::optional<result<completion>> done;
    void on_chunk(chunk) override {}
    void on_done(result<completion> r) override { done = std::move(r); }
  };
  auto sink = std::make_shared<capture>();
  auto gen = route_->shadow_backend->start(req_, *route_->shadow_model, sink);
  if (!gen || !sink->done || !sink->done->has_value()) return;  // a shadow that fails is not recorded
  const completion& c = **sink->done;
  shadow_record s;
  s.tier = route_->shadow_model->name;
  s.answer = c.text;
  s.confidence = c.confidence.value_or(0.0);
  s.would_answer = c.confidence && c.confidence_threshold && *c.confidence >= *c.confidence_threshold;
  s.agrees = normalise_answer(c.text) == normalise_answer(served.text);
  s.cost_usd = cost_usd(c.usage_, route_->shadow_model->price);
  decision_.shadow = std::move(s);
}

void cascade_run::emit_decision() { out_->on_decision(std::make_shared<const route_decision>(decision_)); }

void cascade_run::finish(result<completion> r) {
  if (done_) return;
  done_ = true;
  if (tier_timer_) tier_timer_->cancel();
  if (route_timer_) route_timer_->cancel();
  if (current_) current_->cancel();
  current_.reset();
  decision_.cost_usd = 0.0;
  for (const attempt_record& a : decision_.attempts) decision_.cost_usd += a.cost_usd;
  if (r) {
    // What the baseline would have charged for this request: the prompt at its input price, the served answer
    // at its output price (token counts are the serving tier's).
    const policies::price_per_mtok& p = route_->baseline->price;
    decision_.baseline_cost_usd =
        (double(r->usage_.tokens_input) * p.input_usd + double(r->usage_.tokens_output) * p.output_usd) / 1e6;
    r->served_by = decision_.tier;
    r->cost_usd = decision_.cost_usd;
    r->backend_seconds = backend_seconds_;
    run_shadow(*r);
  } else {
    decision_.tier.clear();
  }
  emit_decision();
  out_->on_done(std::move(r));
}

}  // namespace sluice::router::detail
