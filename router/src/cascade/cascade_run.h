// One routed request: tries the route's tiers cheapest first. A tier that is not the last answers into a buffer
// (bounded by local_max_tokens), is judged (validators, then the acceptance model or rule), and is either served
// from the buffer or left for the next tier; the last tier streams straight through. Per-attempt and overall
// deadlines run on the injected timer service; a timeout is just another reason to move on. A tier that fails
// (not one that answers badly) first tries its model's `fallbacks` in its place, as long as nothing of it reached
// the client. Costs are charged per attempt, each at the price of the model that made it. Everything runs on a serial_queue, so backend callbacks and timers never race.
// What must not go in here: wire formats, sockets, metrics (the gateway reads the route_decision).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "route_table.h"
#include "serial_queue.h"
#include "sluice/router/cascade.h"
#include "sluice/router/resilience.h"

namespace sluice::router::detail {

class cascade_run final : public generation, public std::enable_shared_from_this<cascade_run> {
 public:
  cascade_run(std::shared_ptr<const compiled_route> route, std::shared_ptr<const policies::policy> policy,
              std::shared_ptr<const chat_request> req, std::shared_ptr<generation_sink> out,
              std::shared_ptr<timer_service> timers, std::shared_ptr<resilience_observer> observer);

  void begin();  // once, right after construction
  void cancel() override;

  // From an attempt's sink (any thread): queued onto the run.
  void post_chunk(uint64_t attempt, chunk c);
  void post_done(uint64_t attempt, result<completion> r);
  void post_ready(uint64_t attempt, std::function<void()> resume);

 private:
  using clock = std::chrono::steady_clock;

  void start_attempt(size_t tier, size_t alt = 0);
  bool try_alternative(const error& e, attempt_outcome outcome, const usage& used);
  void on_chunk(uint64_t attempt, chunk c);
  void on_done(uint64_t attempt, result<completion> r);
  void on_tier_timeout(uint64_t attempt);
  void on_route_timeout();
  void judge(completion c);
  void accept(completion c, std::optional<double> score);
  void escalate(escalation_reason reason, attempt_outcome outcome, const usage& used,
                std::optional<double> score = std::nullopt);
  void last_tier_failed(error e);
  void finish(result<completion> r);

  bool judged(size_t tier) const { return tier + 1 < route_->tiers.size(); }
  void record_attempt(attempt_outcome outcome, const usage& used, std::optional<double> score = std::nullopt);
  void run_shadow(const completion& served);
  void emit_decision();  // a snapshot of decision_ to the client's sink
  chunk for_client(chunk c) const;
  std::shared_ptr<const chat_request> attempt_request(size_t tier, const policies::model_config& model) const;
  // The model of the current attempt: the tier's own (alt_ 0) or one of its fallbacks.
  const policies::model_config& current_model() const {
    return alt_ == 0 ? *route_->tiers[tier_] : *route_->fallbacks[tier_][alt_ - 1].model;
  }
  std::optional<double> pre_score(bool& skip_first);

  std::shared_ptr<const compiled_route> route_;
  std::shared_ptr<const policies::policy> policy_;  // keeps route_->config and the model configs alive
  std::shared_ptr<const chat_request> req_;
  std::shared_ptr<generation_sink> out_;
  std::shared_ptr<timer_service> timers_;
  std::shared_ptr<resilience_observer> observer_;  // may be null
  serial_queue queue_;

  // Everything below is touched only on queue_.
  route_decision decision_;
  size_t tier_ = 0;
  size_t alt_ = 0;  // 0: the tier's model; k: its k-th fallback
  uint64_t attempt_ = 0;  // bumped per attempt; events of an earlier attempt are stale
  std::shared_ptr<generation> current_;
  std::shared_ptr<timer_handle> tier_timer_, route_timer_;
  clock::time_point started_at_, attempt_started_at_;
  std::vector<chunk> buffered_;                  // the judged attempt's chunks, replayed when accepted
  std::optional<completion> rejected_;           // a rejected answer, for on_escalation_failure: serve_local
  std::vector<chunk> rejected_chunks_;
  std::string rejected_tier_;
  bool forwarded_ = false;  // a chunk of the serving tier has gone to the client: no more changes of mind
  bool cancelled_ = false;
  bool route_timed_out_ = false;
  bool tier_timed_out_ = false;
  bool done_ = false;
  double backend_seconds_ = 0.0;
};

}  // namespace sluice::router::detail
