// What a tier is. Implemented by the upstream HTTP clients and by the engine adapter (both in gateway/); the
// router never knows which. Asynchronous and callback-based so that no Asio or engine type crosses this line.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "sluice/policies/policy.h"
#include "sluice/router/chat.h"
#include "sluice/router/error.h"

namespace sluice::router {

struct route_decision;  // cascade.h

// Receives one generation's output. Callbacks may come from any thread but never concurrently for one
// generation; on_chunk is never called after on_done; on_done is called exactly once, also after cancel().
class generation_sink {
 public:
  virtual ~generation_sink() = default;
  // Routed requests only: how the route decided. Called once when the serving tier is known (before its first
  // chunk) and once more, complete with costs, just before on_done (also when the route failed).
  virtual void on_decision(std::shared_ptr<const route_decision> decision) { (void)decision; }
  virtual void on_chunk(chunk c) = 0;
  // On success the completion aggregates what was streamed (text, usage, finish reason).
  virtual void on_done(result<completion> r) = 0;
  // Flow control, for producers that can pause (an upstream stream stops reading its socket; the local engine
  // cannot and never calls it). After on_chunk such a producer calls when_ready and produces more only once
  // `resume` has run: at once, or later from any thread, when the consumer has caught up. A sink that does not
  // queue keeps this default; one that wraps another forwards it. `resume` may never run once the consumer has
  // stopped, so a waiting producer must still honour cancel(), and `resume` must not own the producer.
  virtual void when_ready(std::function<void()> resume) { resume(); }
};

// A running generation. cancel() is idempotent and safe from any thread; the sink still gets on_done
// (with errc::cancelled unless the generation had already finished).
class generation {
 public:
  virtual ~generation() = default;
  virtual void cancel() = 0;
};

class backend {
 public:
  virtual ~backend() = default;
  // Starts generating `req` on `model` (the policy entry this backend serves). Never blocks on I/O or
  // model math. Errors found before starting may be delivered either as the return value or via on_done.
  virtual result<std::shared_ptr<generation>> start(std::shared_ptr<const chat_request> req,
                                                    const policies::model_config& model,
                                                    std::shared_ptr<generation_sink> sink) = 0;
  // Stops the backend's own threads at shutdown, after the network has stopped; start() is not called again.
  // Generations still running finish with errc::cancelled (their sinks may drop that callback).
  virtual void stop() {}
  // What exactly answers: "sha256:<hex>" of a local model's file; "" for remote tiers. The cascade refuses an
  // acceptance model trained on another local model.
  virtual std::string identity() const { return {}; }
};

}  // namespace sluice::router
