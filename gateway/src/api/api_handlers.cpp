// See api_handlers.h. Chat and text completions share one flow: parse -> router.dispatch -> collect or stream.
// The pass-through answer (an upstream's body relayed as is) is the hot path: it reuses the connection's chat
// request, event queue and header block, and builds no strings of its own.
#include "api/api_handlers.h"

#include <boost/beast/http/verb.hpp>
#include <charconv>
#include <chrono>

#include "api/access_api.h"
#include "api/anthropic_codec.h"
#include "api/event_queue.h"
#include "ops/access_log.h"
#include "http/http_session.h"
#include "api/json_util.h"
#include "api/models_api.h"
#include "api/openai_codec.h"
#include "http/recycler.h"

namespace sluice::gateway {

namespace http = boost::beast::http;
using clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view json_type = "application/json";

double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

// A cost as a header value: eight decimals (as printf's "%.8f"), formatted on the stack.
struct cost_text {
  char buf[48];
  size_t len = 0;
  explicit cost_text(double usd) {
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, usd, std::chars_format::fixed, 8);
    len = ec == std::errc() ? static_cast<size_t>(end - buf) : 0;
  }
  std::string_view view() const { return {buf, len}; }
};

task<bool> send_error(http_session& s, const router::error& e, int status_override = 0) {
  const int status = status_override ? status_override : router::info(e.code).http_status;
  co_return co_await s.send(status, wire_error_body(s, e), json_type);
}

// One request being served: what the client named (a route or a model) and what is known so far.
struct serving {
  http_session& s;
  std::shared_ptr<router::chat_request> req;
  const policies::route_config* route = nullptr;  // a route of the policy, or null for a plain model
  const policies::model_config* model = nullptr;  // the plain model (null for a route, or an unknown name)
  clock::time_point t0;
  std::optional<double> ttft_s;
  key_grant* grant = nullptr;  // the caller's key and reservation (null on an open gateway)

  // The policy model that serves (or last tried to): the metrics' `model` label. (Views into the policy or the
  // queue's decision, which outlive the request's use of them.)
  std::string_view tier(const event_queue* q) const {
    if (route) {
      const auto* d = q ? q->decision().get() : nullptr;
      if (d && !d->tier.empty()) return d->tier;
      if (d && !d->attempts.empty()) return d->attempts.back().tier;
      return route->tiers.empty() ? std::string_view() : std::string_view(route->tiers.back());
    }
    return model ? std::string_view(model->name) : std::string_view();
  }
};

// Reports one finished request: metrics (labels bounded by gateway_metrics) and, for a route, its decision
// log line.
void record(serving& sv, const event_queue* q, int status, const router::completion* c,
            clock::time_point now = clock::now(), const router::error* err = nullptr) {
  // (The served text goes to the decision log only where the route allows text.)
  auto& state = sv.s.state();
  const router::route_decision* d = sv.route && q ? q->decision().get() : nullptr;
  const double duration = std::chrono::duration<double>(now - sv.t0).count();
  if (state.metrics) {
    request_record r;
    r.model = !sv.route && c && !c->served_by.empty() ? std::string_view(c->served_by) : sv.tier(q);  // (a fallback)
    r.http_status = status;
    r.duration_s = duration;
    r.ttft_s = sv.ttft_s;
    r.count_usage = sv.route == nullptr;  // a route's attempts are counted one by one in record_route
    if (c) {
      r.tokens_input = c->usage_.tokens_input;
      r.tokens_cache_read = c->usage_.tokens_cache_read;
      r.tokens_cache_write = c->usage_.tokens_cache_write;
      r.tokens_output = c->usage_.tokens_output;
      r.cost_usd = c->cost_usd;
      r.overhead_s = std::max(0.0, r.duration_s - c->backend_seconds);
    }
    state.metrics->record_request(r);
    if (d) state.metrics->record_route(*d, sv.ttft_s);
  }
  if (d && state.decisions) {
    decision_context ctx;
    ctx.request_id = sv.s.request_id();
    ctx.endpoint = sv.req->format == router::wire_format::openai_completions  ? "completions"
                   : sv.req->format == router::wire_format::anthropic_messages ? "messages"
                                                                                : "chat";
    ctx.stream = sv.req->stream;
    ctx.http_status = status;
    ctx.latency_s = duration;
    ctx.ttft_s = sv.ttft_s;
    if (c) ctx.response = c->text;
    const bool queued = state.decisions->write(decision_log_line(*d, ctx));
    if (state.metrics) state.metrics->decision_log_lines_total.with({queued ? "queued" : "dropped"}).inc();
    if (queued && state.routed) state.routed->add(sv.s.request_id());
  }
  if (state.access_log) {
    access_entry e;
    e.request_id = sv.s.request_id();
    e.method = sv.s.request().method_string();
    e.path = sv.s.request().target;
    e.path = e.path.substr(0, e.path.find('?'));
    e.status = status;
    e.key = sv.req->caller;
    e.model = sv.req->model;
    if (sv.route) e.route = sv.route->name;
    e.tier = !sv.route && c && !c->served_by.empty() ? std::string_view(c->served_by) : sv.tier(q);
    e.stream = sv.req->stream;
    if (d) {
      e.escalated = d->escalated;
      if (d->escalated) e.escalation_reason = router::to_string(d->reason);
    }
    if (err) {
      e.error_code = router::info(err->code).code;
      e.error_message = err->message;
    } else if (status >= 400 || (!c && status == 200)) {
      e.error_code = status == 499 ? "client_closed" : "incomplete";
    }
    if (c) {
      e.tokens_input = c->usage_.tokens_input;
      e.tokens_output = c->usage_.tokens_output;
      e.cost_usd = c->cost_usd;
    }
    e.latency_s = duration;
    e.ttft_s = sv.ttft_s;
    if (sv.req->traceparent.size() == 55) e.trace_id = std::string_view(sv.req->traceparent).substr(3, 32);
    write_access_log(*state.access_log, state.access_log_level, e);
  }
}

// How the request was served, as response headers: x-sluice-route / -tier / -escalated (and why), and with a
// completion its cost and what the route's baseline would have cost. Written into the connection's header block
// (cleared first) and returned.
const header_block& served_headers(const serving& sv, const event_queue& q, const router::completion* c) {
  header_block& h = sv.s.response_headers();
  h.clear();
  const router::route_decision* d = q.decision().get();
  if (sv.route) {
    h.add("x-sluice-route", sv.route->name);
    if (d && !d->tier.empty()) h.add("x-sluice-tier", d->tier);
    h.add("x-sluice-escalated", d && d->escalated ? "true" : "false");
    if (d && d->escalated) h.add("x-sluice-escalation-reason", router::to_string(d->reason));
    if (d && d->served_after_failure) h.add("x-sluice-served-after-failure", "true");
  } else if (c && !c->served_by.empty() && sv.model && c->served_by != sv.model->name) {
    h.add("x-sluice-tier", c->served_by);  // a fallback of the model asked for answered
    h.add("x-sluice-fallback-from", sv.model->name);
    h.add("x-sluice-escalated", "false");
  } else {
    h.add("x-sluice-tier", sv.tier(&q));
    h.add("x-sluice-escalated", "false");
  }
  if (c) {
    h.add("x-sluice-cost-usd", cost_text(c->cost_usd).view());
    if (d) h.add("x-sluice-baseline-cost-usd", cost_text(d->baseline_cost_usd).view());
  }
  if (sv.grant) add_limit_headers(h, *sv.grant);
  return h;
}

// On a stream the cost is known only at the end: sent as trailers announced in the head.
constexpr std::string_view cost_trailer_names = "x-sluice-cost-usd, x-sluice-baseline-cost-usd";
const header_block& cost_trailers(http_session& s, const event_queue& q, const router::completion& c) {
  header_block& t = s.response_headers();
  t.clear();
  t.add("x-sluice-cost-usd", cost_text(c.cost_usd).view());
  if (const auto* d = q.decision().get()) t.add("x-sluice-baseline-cost-usd", cost_text(d->baseline_cost_usd).view());
  return t;
}

// The `model` field of answers the gateway writes itself: the serving model's upstream name (as OpenAI answers
// with the resolved model), or the name the client used when nothing served.
std::string answer_model(const serving& sv, const event_queue& q) {
  const policies::model_config* m = sv.s.config().policy->find_model(sv.tier(&q));
  if (!m) return sv.req->model;
  return m->upstream_model.empty() ? m->name : m->upstream_model;
}

response_ids ids_for(const serving& sv, const event_queue& q) {
  response_ids ids;
  ids.id = std::string(sv.req->format == router::wire_format::openai_completions  ? "cmpl-"
                       : sv.req->format == router::wire_format::anthropic_messages ? "msg_"
                                                                                    : "chatcmpl-") +
           sv.s.request_id();
  ids.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  ids.model = answer_model(sv, q);
  return ids;
}

// After cancel(), drain until on_done so the backend has let go before the session moves on.
task<void> drain(event_queue& q) {
  for (;;) {
    auto ev = co_await q.next(/*ignore_gone=*/true);
    if (!ev || ev->index() == 1) co_return;
  }
}

// Watches the client for as long as a request is served (see http_session::watch_client).
struct client_watch {
  http_session& s;
  client_watch(http_session& session, const std::shared_ptr<event_queue>& q) : s(session) { s.watch_client(q); }
  ~client_watch() { s.stop_watching(); }
  client_watch(const client_watch&) = delete;
  client_watch& operator=(const client_watch&) = delete;
};

// Counts a request in sluice_requests_in_flight for as long as it lives.
struct in_flight {
  gauge* g;
  explicit in_flight(gateway_metrics* m) : g(m ? &m->requests_in_flight : nullptr) {
    if (g) g->inc();
  }
  ~in_flight() {
    if (g) g->dec();
  }
  in_flight(const in_flight&) = delete;
  in_flight& operator=(const in_flight&) = delete;
};

// The request was interrupted while its backend ran: the client left or a write failed (499); the server cut
// it at the end of its drain grace, or its deadline (server.request_timeout_ms) passed: a 503 or 504 if nothing
// was sent yet, else an in-band error event (and the 200 already sent is what the metrics count).
task<bool> interrupted(serving& sv, router::generation& gen, event_queue& q, bool stream_started) {
  gen.cancel();
  co_await drain(q);
  if (sv.grant) settle(sv.s, *sv.grant, nullptr, /*release=*/false);  // it may have cost anything up to it
  const auto why = q.interrupted();
  if (why != event_queue::interruption::server_stopping && why != event_queue::interruption::deadline) {
    record(sv, &q, 499, nullptr);
    co_return false;
  }
  const bool stopping = why == event_queue::interruption::server_stopping;
  const auto& policy = *sv.s.config().policy;
  router::error e{router::errc::shutting_down,
                  "The server is shutting down; the request was cut before it finished. Retry it."};
  if (!stopping) {
    e = router::error{router::errc::upstream_timeout, "The request did not finish within the server's "
                                                      "request_timeout_ms (" +
                                                          std::to_string(policy.server.request_timeout.count()) +
                                                          " ms)."};
  }
  auto* metrics = sv.s.state().metrics.get();
  if (!stopping && metrics && sv.model && sv.model->kind != policies::model_kind::local) {
    metrics->record_upstream_error(sv.tier(&q), upstream_error_reason::timeout);  // (cancelled: not counted there)
  }
  record(sv, &q, stream_started ? 200 : router::info(e.code).http_status, nullptr, clock::now(), &e);
  if (stopping) sv.s.close_after_response();
  if (!stream_started) {
    const bool again = co_await sv.s.send(router::info(e.code).http_status, wire_error_body(sv.s, e), json_type,
                                          served_headers(sv, q, nullptr));
    co_return again && !stopping;
  }
  bool again = false;
  if (sv.req->format == router::wire_format::anthropic_messages) {  // Anthropic's in-band error event
    const std::string body = anthropic_error_body(e);
    if (co_await sv.s.sse_send_event("error", body)) again = co_await sv.s.sse_end();
    co_return again && !stopping;
  }
  if (co_await sv.s.sse_send(openai_error_body(e))) {
    if (co_await sv.s.sse_send("[DONE]")) again = co_await sv.s.sse_end();
  }
  co_return again && !stopping;
}

// The backend failed before anything was sent to the client: a proper error status.
task<bool> fail(serving& sv, const event_queue& q, const router::error& e) {
  const int status = router::info(e.code).http_status;
  if (sv.grant) settle(sv.s, *sv.grant, nullptr, /*release=*/true);
  record(sv, &q, status, nullptr, clock::now(), &e);
  header_block& h = sv.s.response_headers();
  served_headers(sv, q, nullptr);
  if (!e.retry_after.empty()) h.add("Retry-After", e.retry_after);
  if (!e.retry_after_ms.empty()) h.add("retry-after-ms", e.retry_after_ms);
  co_return co_await sv.s.send(status, wire_error_body(sv.s, e), json_type, h);
}

// `parse` reads the body into the connection's chat request (parse_openai_chat_request or
// parse_openai_completion_request).
using request_parser = std::optional<router::error> (*)(std::string&, router::chat_request&);

// The request was refused before any backend started (invalid, or nothing can serve it).
task<bool> refuse_request(http_session& s, const router::error& e, clock::time_point t0) {
  request_record r;
  r.http_status = router::info(e.code).http_status;
  r.duration_s = seconds_since(t0);
  if (auto* metrics = s.state().metrics.get()) metrics->record_request(r);
  log_refused(s, r.http_status, e, {}, {}, r.duration_s);
  co_return co_await send_error(s, e);
}

task<bool> refuse_dispatch(serving& sv, const router::error& e) {
  if (sv.grant) settle(sv.s, *sv.grant, nullptr, /*release=*/true);
  record(sv, nullptr, router::info(e.code).http_status, nullptr, clock::now(), &e);
  co_return co_await send_error(sv.s, e);
}

// Errors travel to the refusal coroutines on the heap (rare): an error held in the caller's frame would
// double its size (Asio recycles frames only under ~1 KB).
std::unique_ptr<router::error> parse_into(request_parser parse, http_session& s, router::chat_request& req) {
  std::optional<router::error> invalid = parse(s.request().body, req);
  return invalid ? std::make_unique<router::error>(std::move(*invalid)) : nullptr;
}

std::unique_ptr<router::error> dispatch(serving& sv, const std::shared_ptr<event_queue>& queue,
                                        std::shared_ptr<router::generation>& gen) {
  auto started = sv.s.config().router->dispatch(sv.req, queue);
  if (!started) return std::make_unique<router::error>(std::move(started.error()));
  gen = std::move(*started);
  return nullptr;
}

// A chunk a backend sent for a non-streaming request (the local engine streams whatever was asked).
void accumulate(serving& sv, std::unique_ptr<router::completion>& acc, const router::chunk& c) {
  if (!c.text.empty() && !sv.ttft_s) sv.ttft_s = seconds_since(sv.t0);
  if (!acc) acc = std::make_unique<router::completion>();
  acc->text += c.text;
  acc->logprobs.insert(acc->logprobs.end(), c.logprobs.begin(), c.logprobs.end());
}

// The body of a non-streaming answer. A same-wire upstream answer is relayed as is (its buffer moves along);
// otherwise (local tier, or a completions request answered by a chat upstream) the gateway writes the answer
// in the request's format.
std::string answer_body(serving& sv, const event_queue& q, router::completion& c, router::completion* acc,
                        clock::time_point now) {
  if (acc) {
    if (c.text.empty() && !acc->text.empty()) c.text = std::move(acc->text);
    if (c.logprobs.empty()) c.logprobs = std::move(acc->logprobs);
  }
  if (!sv.ttft_s && c.usage_.tokens_output > 0) {
    sv.ttft_s = std::chrono::duration<double>(now - sv.t0).count();  // an upstream's whole answer
  }
  const bool completions_api = sv.req->format == router::wire_format::openai_completions;
  if (sv.req->format == router::wire_format::anthropic_messages) return anthropic_message_json(c, ids_for(sv, q));
  if (!c.raw.empty() && !completions_api) return std::move(c.raw);
  if (completions_api) return openai_completion_response(c, *sv.req, ids_for(sv, q));
  return openai_chat_response(c, *sv.req, ids_for(sv, q));
}

task<bool> serve_stream(serving& sv, router::generation& gen, event_queue& queue);
task<bool> serve_messages_stream(serving& sv, router::generation& gen, event_queue& queue);
task<bool> serve_whole(serving& sv, router::generation& gen, event_queue& queue);

// Kept small on purpose: Asio recycles a coroutine frame only when it is under ~1 KB (gateway_alloc_tests
// notices a frame that grows past it), so the rare paths (refusals, admission, streams, interruptions) and the
// answer loop live in coroutines of their own and the error strings in plain functions.
task<bool> serve_completion(http_session& s, request_parser parse, clock::time_point t0,
                            const policies::key_config* key) {
  auto& state = s.state();
  const in_flight counted(state.metrics.get());
  const std::shared_ptr<router::chat_request>& req = s.reuse_chat_request();
  const size_t body_bytes = s.request().body.size();
  if (auto invalid = parse_into(parse, s, *req)) co_return co_await refuse_request(s, *invalid, t0);
  serving sv{s, req, nullptr, nullptr, t0, std::nullopt};
  sv.req->request_id = s.request_id();
  sv.req->traceparent = s.request().traceparent;
  const auto& policy = *s.config().policy;
  sv.route = policy.find_route(sv.req->model);
  if (!sv.route) sv.model = policy.find_model(sv.req->model);
  std::unique_ptr<key_grant> grant;
  if (key) {
    sv.req->caller = key->name;
    if (sv.route || sv.model) {  // (an unknown name is refused by dispatch, with nothing reserved)
      bool again = false;
      grant = co_await admit(s, *key, *sv.req, body_bytes, again);
      if (!grant) co_return again;
      sv.grant = grant.get();
    }
  }

  const std::shared_ptr<event_queue>& queue = s.reuse_event_queue();
  if (!sv.route) queue->set_deadline(t0 + state.policy->server.request_timeout);  // a route: its cascade's
                                                                                  // (server: the startup policy's)
  std::shared_ptr<router::generation> gen;
  if (auto refused = dispatch(sv, queue, gen)) co_return co_await refuse_dispatch(sv, *refused);
  const client_watch watch(s, queue);
  if (sv.req->stream && sv.req->format == router::wire_format::anthropic_messages) {
    co_return co_await serve_messages_stream(sv, *gen, *queue);
  }
  if (sv.req->stream) co_return co_await serve_stream(sv, *gen, *queue);
  co_return co_await serve_whole(sv, *gen, *queue);
}

// A non-streaming answer: the backend's events until its completion, then one response.
task<bool> serve_whole(serving& sv, router::generation& gen, event_queue& queue) {
  http_session& s = sv.s;
  std::unique_ptr<router::completion> acc;  // chunks from backends that stream even for non-streaming requests
  for (;;) {
    auto ev = co_await queue.next();
    if (!ev) co_return co_await interrupted(sv, gen, queue, false);
    if (const auto* c = std::get_if<router::chunk>(&*ev)) {
      accumulate(sv, acc, *c);
      continue;
    }
    auto& done = std::get<1>(*ev);
    if (!done) co_return co_await fail(sv, queue, done.error());
    router::completion& c = *done;
    const auto now = clock::now();
    std::string body = answer_body(sv, queue, c, acc.get(), now);
    record(sv, &queue, 200, &c, now);
    if (sv.grant) settle(s, *sv.grant, &c, false);
    const bool again = co_await s.send(200, std::move(body), json_type, served_headers(sv, queue, &c));
    give_buffer(std::move(c.text));  // (recycled buffers the upstream parse filled: recycler.h)
    give_buffer(std::move(c.model));
    co_return again;
  }
}

task<bool> serve_stream(serving& sv, router::generation& gen, event_queue& queue) {
  http_session& s = sv.s;
  const bool completions_api = sv.req->format == router::wire_format::openai_completions;
  auto* q = &queue;
  // Until the first event, a failure is still a proper error status.
  bool started = false;
  bool first_chunk = true;
  bool relayed_raw = false;
  response_ids ids;
  for (;;) {
    auto ev = co_await q->next();
    if (!ev) co_return co_await interrupted(sv, gen, *q, started);
    if (!started) {
      if (auto* done = std::get_if<1>(&*ev); done && !*done) co_return co_await fail(sv, *q, done->error());
      started = true;
      ids = ids_for(sv, *q);
      if (!co_await s.sse_begin(served_headers(sv, *q, nullptr), cost_trailer_names)) {
        co_return co_await interrupted(sv, gen, *q, started);
      }
    }
    if (auto* c = std::get_if<router::chunk>(&*ev)) {
      if (!sv.ttft_s && !c->text.empty()) sv.ttft_s = seconds_since(sv.t0);
      bool ok = true;
      if (!c->raw.empty() && c->raw_format == sv.req->format) {
        if (c->usage_only && !sv.req->include_usage) continue;  // we asked upstream for usage; the client did not
        relayed_raw = true;
        ok = co_await s.sse_send(c->raw);
        give_buffer(std::move(c->raw));  // (a recycled buffer the upstream filled: recycler.h)
      } else if (c->usage_only) {
        continue;  // an upstream's usage chunk in another format: the gateway writes its own below
      } else if (!c->text.empty() || c->finish || first_chunk) {
        std::string json = completions_api ? openai_completion_chunk_json(*c, *sv.req, ids)
                                           : openai_chat_chunk_json(*c, *sv.req, ids, first_chunk);
        ok = co_await s.sse_send(json);
        first_chunk = false;
      }
      if (!ok) co_return co_await interrupted(sv, gen, *q, started);
      continue;
    }
    auto& done = std::get<1>(*ev);
    if (!done) {
      // After the 200 the only way to signal failure is in-band (PITFALLS.md "Streaming semantics"). The
      // metrics count the 200 the client got; sluice_upstream_errors_total says what broke.
      const router::error err = done.error();
      co_await s.sse_send(openai_error_body(err));
      co_await s.sse_send("[DONE]");
      record(sv, q, 200, nullptr, clock::now(), &err);
      if (sv.grant) settle(s, *sv.grant, nullptr, /*release=*/false);
      co_return co_await s.sse_end();
    }
    router::completion& c = *done;
    if (sv.req->include_usage && !relayed_raw) {  // a relayed upstream stream already carried its usage chunk
      co_await s.sse_send(openai_usage_chunk_json(c.usage_, ids, completions_api));
    }
    co_await s.sse_send("[DONE]");
    record(sv, q, 200, &c);
    if (sv.grant) settle(s, *sv.grant, &c, false);
    co_return co_await s.sse_end(cost_trailers(s, *q, c));
  }
}

// The head of a /v1/messages stream: the response head, message_start, the text block's start and a ping.
task<bool> begin_messages_stream(serving& sv, const event_queue& q) {
  http_session& s = sv.s;
  if (!co_await s.sse_begin(served_headers(sv, q, nullptr), cost_trailer_names)) co_return false;
  const std::string start = anthropic_message_start_json(ids_for(sv, q), router::usage{});
  if (!co_await s.sse_send_event("message_start", start)) co_return false;
  if (!co_await s.sse_send_event("content_block_start", anthropic_content_block_start_json())) co_return false;
  co_return co_await s.sse_send_event("ping", anthropic_ping_json());
}

// POST /v1/messages with "stream": true. The gateway writes Anthropic's event sequence whatever tier serves
// (message_start, content_block_start, ping, content_block_delta..., content_block_stop, message_delta with the
// usage, message_stop); a failure after the head is an in-band "error" event (PITFALLS.md "Streaming semantics").
// The input tokens are known only at the end on most tiers: message_start says 0, message_delta the real count.
task<bool> serve_messages_stream(serving& sv, router::generation& gen, event_queue& queue) {
  http_session& s = sv.s;
  auto* q = &queue;
  bool started = false;
  for (;;) {
    auto ev = co_await q->next();
    if (!ev) co_return co_await interrupted(sv, gen, *q, started);
    if (!started) {
      if (auto* done = std::get_if<1>(&*ev); done && !*done) co_return co_await fail(sv, *q, done->error());
      started = true;
      if (!co_await begin_messages_stream(sv, *q)) co_return co_await interrupted(sv, gen, *q, started);
    }
    if (auto* c = std::get_if<router::chunk>(&*ev)) {
      if (c->text.empty()) continue;
      if (!sv.ttft_s) sv.ttft_s = seconds_since(sv.t0);
      const std::string delta = anthropic_text_delta_json(c->text);
      if (!co_await s.sse_send_event("content_block_delta", delta)) {
        co_return co_await interrupted(sv, gen, *q, started);
      }
      continue;
    }
    auto& done = std::get<1>(*ev);
    if (!done) {
      const router::error err = done.error();
      const std::string body = anthropic_error_body(err);
      co_await s.sse_send_event("error", body);
      record(sv, q, 200, nullptr, clock::now(), &err);
      if (sv.grant) settle(s, *sv.grant, nullptr, /*release=*/false);
      co_return co_await s.sse_end();
    }
    router::completion& c = *done;
    co_await s.sse_send_event("content_block_stop", anthropic_content_block_stop_json());
    const std::string delta = anthropic_message_delta_json(c.finish, c.stop_sequence, c.usage_);
    co_await s.sse_send_event("message_delta", delta);
    co_await s.sse_send_event("message_stop", anthropic_message_stop_json());
    record(sv, q, 200, &c);
    if (sv.grant) settle(s, *sv.grant, &c, false);
    co_return co_await s.sse_end(cost_trailers(s, *q, c));
  }
}

// POST /v1/feedback: an outcome for a recent routed request, appended to the decision log. (Errors are named
// locals before they are awaited on: g++ 12 mishandles temporaries with strings inside co_await expressions.)
task<bool> post_feedback(http_session& s) {
  auto& state = s.state();
  const char* result = "recorded";
  std::optional<router::error> problem;
  auto f = parse_feedback(std::move(s.request().body));
  if (!f) {
    result = "invalid";
    problem = f.error();
  } else if (!state.decisions || !state.routed) {
    result = "invalid";
    problem = router::error{router::errc::not_implemented,
                            "Feedback is recorded in the decision log, and this gateway's policy has none (add a "
                            "decision_log section)."};
  } else {
    switch (state.routed->claim_feedback(f->request_id)) {
      case request_index::claim::unknown:
        result = "unknown_request";
        problem = router::error{router::errc::not_found,
                                "No recent routed request has the id '" + f->request_id +
                                    "'. Feedback names the x-request-id of an answer served through a route of this "
                                    "gateway; ids are kept for the last 1,000,000 routed requests and not across "
                                    "restarts.",
                                "request_id"};
        break;
      case request_index::claim::duplicate:
        result = "duplicate";
        problem = router::error{router::errc::conflict,
                                "Feedback for request '" + f->request_id +
                                    "' was already recorded; it is accepted once per request.",
                                "request_id"};
        break;
      case request_index::claim::recorded:
        if (!state.decisions->write(feedback_log_line(*f))) {
          result = "dropped";
          problem = router::error{router::errc::overloaded,
                                  "The decision log is not keeping up; retry the feedback later."};
        }
        break;
    }
  }
  if (state.metrics) state.metrics->feedback_total.with({result}).inc();
  if (problem) co_return co_await send_error(s, *problem);
  std::string out = "{\"object\":\"feedback\",\"request_id\":";
  append_json_string(out, f->request_id);
  out += ",\"status\":\"recorded\"}";
  co_return co_await s.send(200, std::move(out), json_type);
}

// A request no endpoint takes (an unknown path, a wrong method): counted with model "unknown".
// (By value: the callers' temporaries are gone when the coroutine runs.)
task<bool> refuse(http_session& s, int status, router::error e, header_block headers, clock::time_point t0) {
  if (auto* metrics = s.state().metrics.get()) {
    request_record r;
    r.http_status = status;
    r.duration_s = seconds_since(t0);
    metrics->record_request(r);
  }
  log_refused(s, status, e, {}, {}, seconds_since(t0));
  co_return co_await s.send(status, wire_error_body(s, e), json_type, headers);
}

enum class endpoint_id {
  chat, completions, messages, feedback, models, healthz, readyz, metrics, model, reload, reload_status, not_allowed, not_found
};

struct endpoint {
  std::string_view path;
  http::verb verb;
  endpoint_id id;
};
constexpr endpoint endpoints[] = {
    {"/v1/chat/completions", http::verb::post, endpoint_id::chat},
    {"/v1/completions", http::verb::post, endpoint_id::completions},
    {"/v1/messages", http::verb::post, endpoint_id::messages},
    {"/v1/feedback", http::verb::post, endpoint_id::feedback},
    {"/v1/models", http::verb::get, endpoint_id::models},
    {"/healthz", http::verb::get, endpoint_id::healthz},
    {"/readyz", http::verb::get, endpoint_id::readyz},
    {"/metrics", http::verb::get, endpoint_id::metrics},
    {"/admin/reload", http::verb::post, endpoint_id::reload},
    {"/admin/reload", http::verb::get, endpoint_id::reload_status},
};
constexpr std::string_view models_prefix = "/v1/models/";

// Which endpoint takes the request: the path without its query; HEAD is GET without the body
// (http_session::send leaves it out). For not_allowed, `allowed` is the endpoint's path and method.
endpoint_id route_of(const incoming_request& req, std::string_view& target, const endpoint*& allowed) {
  target = req.target;
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  const bool get_or_head = req.method == http::verb::get || req.method == http::verb::head;
  for (const endpoint& ep : endpoints) {
    if (target != ep.path) continue;
    if (req.method == ep.verb || (ep.verb == http::verb::get && get_or_head)) return ep.id;
    if (!allowed) allowed = &ep;
  }
  if (allowed) return endpoint_id::not_allowed;
  if (target.starts_with(models_prefix) && target.size() > models_prefix.size()) {
    if (get_or_head) return endpoint_id::model;
    static constexpr endpoint retrieve{"/v1/models/{model}", http::verb::get, endpoint_id::model};
    allowed = &retrieve;
    return endpoint_id::not_allowed;
  }
  return endpoint_id::not_found;
}

task<bool> refuse_method(http_session& s, const endpoint& allowed, clock::time_point t0) {
  router::error e{router::errc::bad_request, "Method " + std::string(s.request().method_string()) +
                                                 " is not allowed on " + std::string(allowed.path) + "."};
  header_block allow;
  const auto verb_name = http::to_string(allowed.verb);
  allow.add("Allow", allowed.verb == http::verb::get ? std::string_view("GET, HEAD")
                                                     : std::string_view(verb_name.data(), verb_name.size()));
  co_return co_await refuse(s, 405, std::move(e), std::move(allow), t0);
}

task<bool> refuse_path(http_session& s, std::string_view target, clock::time_point t0) {
  std::string msg = "Invalid URL (" + std::string(s.request().method_string()) + " " + std::string(target) + ").";
  router::error e{router::errc::bad_request, std::move(msg)};
  co_return co_await refuse(s, 404, std::move(e), {}, t0);
}

task<bool> readyz(http_session& s) {
  const bool ready = s.state().ready.load();
  std::string body = ready                       ? "{\"status\":\"ready\""
                     : s.state().draining.load() ? "{\"status\":\"draining\""
                                                 : "{\"status\":\"starting\"";
  if (ready) {
    // Still ready (other models serve), but say which models fail fast now.
    const auto open = s.config().router->open_circuits();
    if (!open.empty()) {
      body += ",\"open_circuits\":[";
      for (size_t i = 0; i < open.size(); ++i) {
        if (i) body += ',';
        append_json_string(body, open[i]);
      }
      body += ']';
    }
  }
  body += '}';
  co_return co_await s.send(ready ? 200 : 503, std::move(body), json_type);
}

// POST /v1/messages: the anthropic-version header checked, then the same flow as chat completions.
task<bool> serve_messages(http_session& s, clock::time_point t0, const policies::key_config* key) {
  if (auto bad_version = check_anthropic_version(s.request().anthropic_version)) {
    co_return co_await refuse_request(s, *bad_version, t0);
  }
  co_return co_await serve_completion(s, &parse_anthropic_messages_request, t0, key);
}

task<bool> metrics_text(http_session& s) {
  std::string text = s.state().metrics ? s.state().metrics->expose() : std::string();
  co_return co_await s.send(200, std::move(text), "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace

// The endpoints that need a key when the policy has keys (health checks never do; /metrics needs an admin key
// when the policy has admin keys).
bool needs_key(endpoint_id id) {
  switch (id) {
    case endpoint_id::chat:
    case endpoint_id::completions:
    case endpoint_id::messages:
    case endpoint_id::feedback:
    case endpoint_id::models:
    case endpoint_id::model: return true;
    default: return false;
  }
}

void log_refused(http_session& s, int status, const router::error& err, std::string_view key, std::string_view model,
                 double latency_s) {
  auto& log = s.state().access_log;
  if (!log) return;
  access_entry e;
  e.request_id = s.request_id();
  e.method = s.request().method_string();
  e.path = s.request().target;
  e.path = e.path.substr(0, e.path.find('?'));
  e.status = status;
  e.key = key;
  e.model = model;
  e.error_code = router::info(err.code).code;
  e.error_message = err.message;
  e.latency_s = latency_s;
  if (s.request().traceparent.size() == 55) e.trace_id = std::string_view(s.request().traceparent).substr(3, 32);
  write_access_log(*log, s.state().access_log_level, e);
}

// POST /admin/reload: loads the policy file again (as SIGHUP does) on a thread of its own; 202 when started. GET
// says how the last reload went. Both need an admin key (without admin keys in the policy: SIGHUP only).
task<bool> admin_reload(http_session& s, bool start) {
  auto& state = s.state();
  bool again = false;
  if (!s.config().policy->has_admin_keys()) {
    router::error e{router::errc::forbidden, "Reloading over HTTP needs an admin key (a key with admin: true in the "
                                             "policy); or send SIGHUP to the process."};
    co_return co_await send_error(s, e);
  }
  const bool ok = co_await authenticate_admin(s, again);
  if (!ok) co_return again;
  if (!state.request_reload || !state.reload_status) {
    router::error e{router::errc::not_implemented, "This server cannot reload its policy."};
    co_return co_await send_error(s, e);
  }
  if (!start) co_return co_await s.send(200, state.reload_status(), json_type);
  if (!state.request_reload("POST /admin/reload")) {
    router::error e{router::errc::conflict, "A policy reload is already running; GET /admin/reload says when it is "
                                            "done."};
    co_return co_await send_error(s, e);
  }
  co_return co_await s.send(202, "{\"status\":\"reloading\"}", json_type);
}

// While the models load (the listener is up first): /healthz says the process lives, everything else 503.
task<bool> starting(http_session& s, endpoint_id id) {
  if (id == endpoint_id::healthz) co_return co_await s.send(200, "{\"status\":\"ok\"}", json_type);
  if (id == endpoint_id::readyz) co_return co_await s.send(503, "{\"status\":\"starting\"}", json_type);
  router::error e{router::errc::overloaded, "The gateway is starting (loading its models); retry shortly."};
  header_block h;
  h.add("Retry-After", "1");
  co_return co_await s.send(503, wire_error_body(s, e), json_type, h);
}

std::string wire_error_body(const http_session& s, const router::error& e) {
  const std::string_view target = s.request().target;
  const bool anthropic_client = !s.request().anthropic_version.empty();  // (the Anthropic SDK sends it)
  if (target.starts_with("/v1/messages") || (target.starts_with("/v1/models") && anthropic_client)) {
    return anthropic_error_body(e);
  }
  return openai_error_body(e);
}

task<bool> handle_request(http_session& s) {
  const auto t0 = clock::now();
  std::string_view target;
  const endpoint* allowed = nullptr;
  const endpoint_id id = route_of(s.request(), target, allowed);
  if (!s.has_config()) co_return co_await starting(s, id);
  const policies::key_config* key = nullptr;
  if (s.config().access) {
    bool again = false;
    if (needs_key(id)) {
      const bool ok = co_await authenticate(s, key, again);
      if (!ok) co_return again;
    } else if (id == endpoint_id::metrics) {
      const bool ok = co_await authenticate_admin(s, again);
      if (!ok) co_return again;
    }
  }
  switch (id) {
    case endpoint_id::chat: co_return co_await serve_completion(s, &parse_openai_chat_request, t0, key);
    case endpoint_id::completions: co_return co_await serve_completion(s, &parse_openai_completion_request, t0, key);
    case endpoint_id::messages: co_return co_await serve_messages(s, t0, key);
    case endpoint_id::feedback: co_return co_await post_feedback(s);
    case endpoint_id::models: co_return co_await list_models(s, key);
    case endpoint_id::healthz: co_return co_await s.send(200, "{\"status\":\"ok\"}", json_type);
    case endpoint_id::readyz: co_return co_await readyz(s);
    case endpoint_id::metrics: co_return co_await metrics_text(s);
    case endpoint_id::model: co_return co_await retrieve_model(s, target.substr(models_prefix.size()), key);
    case endpoint_id::reload: co_return co_await admin_reload(s, true);
    case endpoint_id::reload_status: co_return co_await admin_reload(s, false);
    case endpoint_id::not_allowed: co_return co_await refuse_method(s, *allowed, t0);
    case endpoint_id::not_found: break;
  }
  co_return co_await refuse_path(s, target, t0);
}

}  // namespace sluice::gateway
