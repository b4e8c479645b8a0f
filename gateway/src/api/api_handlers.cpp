// See api_handlers.h. Chat and text completions share one flow: parse -> router.dispatch -> collect or stream.
#include "api/api_handlers.h"

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <chrono>

#include "api/event_queue.h"
#include "http/http_session.h"
#include "api/json_util.h"
#include "api/openai_codec.h"

namespace sluice::gateway {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::awaitable;
using clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view json_type = "application/json";

double seconds_since(clock::time_point t) { return std::chrono::duration<double>(clock::now() - t).count(); }

std::string cost_header(double usd) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.8f", usd);
  return buf;
}

awaitable<bool> send_error(http_session& s, const router::error& e, int status_override = 0) {
  const int status = status_override ? status_override : router::info(e.code).http_status;
  co_return co_await s.send(status, openai_error_body(e), json_type);
}

// One request being served: what the client named (a route or a model) and what is known so far.
struct serving {
  http_session& s;
  std::shared_ptr<router::chat_request> req;
  const policies::route_config* route = nullptr;  // a route of the policy, or null for a plain model
  const policies::model_config* model = nullptr;  // the plain model (null for a route, or an unknown name)
  clock::time_point t0;
  std::optional<double> ttft_s;

  // The policy model that serves (or last tried to): the metrics' `model` label.
  std::string tier(const event_queue* q) const {
    if (route) {
      const auto* d = q ? q->decision().get() : nullptr;
      if (d && !d->tier.empty()) return d->tier;
      if (d && !d->attempts.empty()) return d->attempts.back().tier;
      return route->tiers.empty() ? std::string() : route->tiers.back();
    }
    return model ? model->name : std::string();
  }
};

// Reports one finished request: metrics (labels bounded by gateway_metrics) and, for a route, its decision
// log line.
void record(serving& sv, const event_queue* q, int status, const router::completion* c) {
  // (The served text goes to the decision log only where the route allows text.)
  auto& state = sv.s.state();
  const router::route_decision* d = sv.route && q ? q->decision().get() : nullptr;
  const double duration = seconds_since(sv.t0);
  if (state.metrics) {
    request_record r;
    const std::string tier = sv.tier(q);
    r.model = tier;
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
    ctx.endpoint = sv.req->format == router::wire_format::openai_completions ? "completions" : "chat";
    ctx.stream = sv.req->stream;
    ctx.http_status = status;
    ctx.latency_s = duration;
    ctx.ttft_s = sv.ttft_s;
    if (c) ctx.response = c->text;
    const bool queued = state.decisions->write(decision_log_line(*d, ctx));
    if (state.metrics) state.metrics->decision_log_lines_total.with({queued ? "queued" : "dropped"}).inc();
    if (queued && state.routed) state.routed->add(sv.s.request_id());
  }
}

// How the request was served, as response headers: x-sluice-route / -tier / -escalated (and why), and with a
// completion its cost and what the route's baseline would have cost.
header_list served_headers(const serving& sv, const event_queue& q, const router::completion* c) {
  header_list h;
  const router::route_decision* d = q.decision().get();
  if (sv.route) {
    h.emplace_back("x-sluice-route", sv.route->name);
    if (d && !d->tier.empty()) h.emplace_back("x-sluice-tier", d->tier);
    h.emplace_back("x-sluice-escalated", d && d->escalated ? "true" : "false");
    if (d && d->escalated) h.emplace_back("x-sluice-escalation-reason", router::to_string(d->reason));
    if (d && d->served_after_failure) h.emplace_back("x-sluice-served-after-failure", "true");
  } else {
    h.emplace_back("x-sluice-tier", sv.tier(&q));
    h.emplace_back("x-sluice-escalated", "false");
  }
  if (c) {
    h.emplace_back("x-sluice-cost-usd", cost_header(c->cost_usd));
    if (d) h.emplace_back("x-sluice-baseline-cost-usd", cost_header(d->baseline_cost_usd));
  }
  return h;
}

// On a stream the cost is known only at the end: sent as trailers announced in the head.
constexpr std::string_view cost_trailer_names = "x-sluice-cost-usd, x-sluice-baseline-cost-usd";
header_list cost_trailers(const event_queue& q, const router::completion& c) {
  header_list t{{"x-sluice-cost-usd", cost_header(c.cost_usd)}};
  if (const auto* d = q.decision().get()) t.emplace_back("x-sluice-baseline-cost-usd", cost_header(d->baseline_cost_usd));
  return t;
}

// The `model` field of answers the gateway writes itself: the serving model's upstream name (as OpenAI answers
// with the resolved model), or the name the client used when nothing served.
std::string answer_model(const serving& sv, const event_queue& q) {
  const policies::model_config* m = sv.s.state().policy->find_model(sv.tier(&q));
  if (!m) return sv.req->model;
  return m->upstream_model.empty() ? m->name : m->upstream_model;
}

response_ids ids_for(const serving& sv, const event_queue& q) {
  response_ids ids;
  ids.id = (sv.req->format == router::wire_format::openai_completions ? "cmpl-" : "chatcmpl-") + sv.s.request_id();
  ids.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  ids.model = answer_model(sv, q);
  return ids;
}

// After cancel(), drain until on_done so the backend has let go before the session moves on.
awaitable<void> drain(event_queue& q) {
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
awaitable<bool> interrupted(serving& sv, router::generation& gen, event_queue& q, bool stream_started) {
  gen.cancel();
  co_await drain(q);
  const auto why = q.interrupted();
  if (why != event_queue::interruption::server_stopping && why != event_queue::interruption::deadline) {
    record(sv, &q, 499, nullptr);
    co_return false;
  }
  const bool stopping = why == event_queue::interruption::server_stopping;
  const auto& policy = *sv.s.state().policy;
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
  record(sv, &q, stream_started ? 200 : router::info(e.code).http_status, nullptr);
  if (stopping) sv.s.close_after_response();
  if (!stream_started) {
    const bool again = co_await sv.s.send(router::info(e.code).http_status, openai_error_body(e), json_type,
                                          served_headers(sv, q, nullptr));
    co_return again && !stopping;
  }
  bool again = false;
  if (co_await sv.s.sse_send(openai_error_body(e))) {
    if (co_await sv.s.sse_send("[DONE]")) again = co_await sv.s.sse_end();
  }
  co_return again && !stopping;
}

// The backend failed before anything was sent to the client: a proper error status.
awaitable<bool> fail(serving& sv, const event_queue& q, const router::error& e) {
  const int status = router::info(e.code).http_status;
  record(sv, &q, status, nullptr);
  header_list h = served_headers(sv, q, nullptr);
  if (!e.retry_after.empty()) h.emplace_back("Retry-After", e.retry_after);
  if (!e.retry_after_ms.empty()) h.emplace_back("retry-after-ms", e.retry_after_ms);
  co_return co_await sv.s.send(status, openai_error_body(e), json_type, h);
}

awaitable<bool> serve_completion(http_session& s, router::result<router::chat_request> parsed, clock::time_point t0) {
  auto& state = s.state();
  const in_flight counted(state.metrics.get());
  if (!parsed) {
    request_record r;
    r.http_status = router::info(parsed.error().code).http_status;
    r.duration_s = seconds_since(t0);
    if (state.metrics) state.metrics->record_request(r);
    co_return co_await send_error(s, parsed.error());
  }
  serving sv{s, std::make_shared<router::chat_request>(std::move(*parsed)), nullptr, nullptr, t0, std::nullopt};
  sv.req->request_id = s.request_id();
  sv.route = state.policy->find_route(sv.req->model);
  if (!sv.route) sv.model = state.policy->find_model(sv.req->model);

  auto queue = std::make_shared<event_queue>(co_await asio::this_coro::executor);
  if (!sv.route) queue->set_deadline(t0 + state.policy->server.request_timeout);  // a route: its cascade's
  auto gen = state.router->dispatch(sv.req, queue);
  if (!gen) {
    record(sv, nullptr, router::info(gen.error().code).http_status, nullptr);
    co_return co_await send_error(s, gen.error());
  }
  const bool completions_api = sv.req->format == router::wire_format::openai_completions;
  const client_watch watch(s, queue);

  if (!sv.req->stream) {
    router::completion acc;  // chunks from backends that stream even for non-streaming requests
    for (;;) {
      auto ev = co_await queue->next();
      if (!ev) co_return co_await interrupted(sv, **gen, *queue, false);
      if (auto* c = std::get_if<router::chunk>(&*ev)) {
        if (!c->text.empty() && !sv.ttft_s) sv.ttft_s = seconds_since(t0);
        acc.text += c->text;
        acc.logprobs.insert(acc.logprobs.end(), c->logprobs.begin(), c->logprobs.end());
        continue;
      }
      auto& done = std::get<1>(*ev);
      if (!done) co_return co_await fail(sv, *queue, done.error());
      router::completion& c = *done;
      if (c.text.empty() && !acc.text.empty()) c.text = std::move(acc.text);
      if (c.logprobs.empty()) c.logprobs = std::move(acc.logprobs);
      if (!sv.ttft_s && c.usage_.tokens_output > 0) sv.ttft_s = seconds_since(t0);  // an upstream's whole answer
      const auto ids = ids_for(sv, *queue);
      std::string body;
      // A same-wire upstream answer is relayed as is; otherwise (local tier, or a completions request answered
      // by a chat upstream) the gateway writes the answer in the request's format.
      if (!c.raw.empty() && !completions_api) body = std::move(c.raw);
      else if (completions_api) body = openai_completion_response(c, *sv.req, ids);
      else body = openai_chat_response(c, *sv.req, ids);
      record(sv, queue.get(), 200, &c);
      co_return co_await s.send(200, std::move(body), json_type, served_headers(sv, *queue, &c));
    }
  }

  // Streaming. Until the first event, a failure is still a proper error status.
  bool started = false;
  bool first_chunk = true;
  bool relayed_raw = false;
  response_ids ids;
  for (;;) {
    auto ev = co_await queue->next();
    if (!ev) co_return co_await interrupted(sv, **gen, *queue, started);
    if (!started) {
      if (auto* done = std::get_if<1>(&*ev); done && !*done) co_return co_await fail(sv, *queue, done->error());
      started = true;
      ids = ids_for(sv, *queue);
      if (!co_await s.sse_begin(served_headers(sv, *queue, nullptr), cost_trailer_names)) {
        co_return co_await interrupted(sv, **gen, *queue, started);
      }
    }
    if (auto* c = std::get_if<router::chunk>(&*ev)) {
      if (!sv.ttft_s && !c->text.empty()) sv.ttft_s = seconds_since(t0);
      bool ok = true;
      if (!c->raw.empty() && c->raw_format == sv.req->format) {
        if (c->usage_only && !sv.req->include_usage) continue;  // we asked upstream for usage; the client did not
        relayed_raw = true;
        ok = co_await s.sse_send(c->raw);
      } else if (c->usage_only) {
        continue;  // an upstream's usage chunk in another format: the gateway writes its own below
      } else if (!c->text.empty() || c->finish || first_chunk) {
        std::string json = completions_api ? openai_completion_chunk_json(*c, *sv.req, ids)
                                           : openai_chat_chunk_json(*c, *sv.req, ids, first_chunk);
        ok = co_await s.sse_send(json);
        first_chunk = false;
      }
      if (!ok) co_return co_await interrupted(sv, **gen, *queue, started);
      continue;
    }
    auto& done = std::get<1>(*ev);
    if (!done) {
      // After the 200 the only way to signal failure is in-band (PITFALLS.md "Streaming semantics"). The
      // metrics count the 200 the client got; sluice_upstream_errors_total says what broke.
      co_await s.sse_send(openai_error_body(done.error()));
      co_await s.sse_send("[DONE]");
      record(sv, queue.get(), 200, nullptr);
      co_return co_await s.sse_end();
    }
    router::completion& c = *done;
    if (sv.req->include_usage && !relayed_raw) {  // a relayed upstream stream already carried its usage chunk
      co_await s.sse_send(openai_usage_chunk_json(c.usage_, ids, completions_api));
    }
    co_await s.sse_send("[DONE]");
    record(sv, queue.get(), 200, &c);
    co_return co_await s.sse_end(cost_trailers(*queue, c));
  }
}

// POST /v1/feedback: an outcome for a recent routed request, appended to the decision log. (Errors are named
// locals before they are awaited on: g++ 12 mishandles temporaries with strings inside co_await expressions.)
awaitable<bool> post_feedback(http_session& s) {
  auto& state = s.state();
  const char* result = "recorded";
  std::optional<router::error> problem;
  auto f = parse_feedback(std::move(s.request().body()));
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

// OpenAI model objects for /v1/models and /v1/models/{id}.
constexpr std::string_view route_owner = "sluice-route";
std::string_view owner(const policies::model_config& m) {
  switch (m.kind) {
    case policies::model_kind::local: return "sluice-local";
    case policies::model_kind::task: return "sluice-task";
    default: return "sluice";
  }
}
void append_model_object(std::string& out, std::string_view id, std::string_view owned_by) {
  out += "{\"id\":";
  append_json_string(out, id);
  out += ",\"object\":\"model\",\"created\":0,\"owned_by\":";
  append_json_string(out, owned_by);
  out += '}';
}

awaitable<bool> list_models(http_session& s) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& m : s.state().policy->models) {
    if (!first) out += ',';
    first = false;
    append_model_object(out, m.name, owner(m));
  }
  for (const auto& r : s.state().policy->routes) {
    if (!first) out += ',';
    first = false;
    append_model_object(out, r.name, route_owner);
  }
  out += "]}";
  co_return co_await s.send(200, std::move(out), json_type);
}

// "%2F" -> "/"; nullopt for a malformed escape.
std::optional<std::string> percent_decode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

constexpr std::string_view model_name_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-";

// GET /v1/models/{id} (the SDKs' models.retrieve): a model or route of the policy, else 404 model_not_found.
awaitable<bool> retrieve_model(http_session& s, std::string_view encoded_id) {
  const auto& policy = *s.state().policy;
  const std::optional<std::string> id = percent_decode(encoded_id);
  std::string out;
  if (const auto* m = id ? policy.find_model(*id) : nullptr) {
    append_model_object(out, m->name, owner(*m));
  } else if (const auto* r = id ? policy.find_route(*id) : nullptr) {
    append_model_object(out, r->name, route_owner);
  }
  if (!out.empty()) co_return co_await s.send(200, std::move(out), json_type);
  // The id is echoed only when it could be a model name at all (policy.md: letters, digits and . _ : / -).
  router::error e{router::errc::unknown_model, "The model does not exist", "model"};
  if (id && id->size() <= 256 && id->find_first_not_of(model_name_chars) == std::string::npos) {
    e.message = "The model '" + *id + "' does not exist";
  }
  co_return co_await send_error(s, e);
}

// A request no endpoint takes (an unknown path, a wrong method): counted with model "unknown".
// (By value: the callers' temporaries are gone when the coroutine runs.)
awaitable<bool> refuse(http_session& s, int status, router::error e, header_list headers, clock::time_point t0) {
  if (auto* metrics = s.state().metrics.get()) {
    request_record r;
    r.http_status = status;
    r.duration_s = seconds_since(t0);
    metrics->record_request(r);
  }
  co_return co_await s.send(status, openai_error_body(e), json_type, headers);
}

struct endpoint {
  std::string_view path;
  http::verb verb;
};
// (At namespace scope: g++ 12 cannot hold a local array in a coroutine frame.)
constexpr endpoint endpoints[] = {
    {"/v1/chat/completions", http::verb::post}, {"/v1/completions", http::verb::post},
    {"/v1/feedback", http::verb::post},
    {"/v1/models", http::verb::get},           {"/healthz", http::verb::get},
    {"/readyz", http::verb::get},              {"/metrics", http::verb::get},
};

}  // namespace

awaitable<bool> handle_request(http_session& s) {
  const auto t0 = clock::now();
  auto& req = s.request();
  std::string_view target = req.target();
  if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  const auto method = req.method();
  // HEAD is GET without the body (http_session::send leaves it out).
  const bool get_or_head = method == http::verb::get || method == http::verb::head;
  auto route = [&](std::string_view path, http::verb want) -> int {  // 1 = match, 0 = other path, -1 = bad method
    if (target != path) return 0;
    return method == want || (want == http::verb::get && get_or_head) ? 1 : -1;
  };
  auto not_allowed = [&](std::string_view path, http::verb allowed) {
    router::error e{router::errc::bad_request, "Method " + std::string(req.method_string()) +
                                                   " is not allowed on " + std::string(path) + "."};
    header_list allow;
    allow.emplace_back("Allow", allowed == http::verb::get ? std::string("GET, HEAD")
                                                           : std::string(http::to_string(allowed)));
    return refuse(s, 405, e, allow, t0);
  };

  for (size_t i = 0; i < std::size(endpoints); ++i) {  // (no range-for over an array: g++ 12 coroutine bug)
    const endpoint& ep = endpoints[i];
    const int m = route(ep.path, ep.verb);
    if (m == 0) continue;
    if (m < 0) co_return co_await not_allowed(ep.path, ep.verb);
    if (ep.path == "/v1/chat/completions") {
      co_return co_await serve_completion(s, parse_openai_chat_request(std::move(req.body())), t0);
    }
    if (ep.path == "/v1/completions") {
      co_return co_await serve_completion(s, parse_openai_completion_request(std::move(req.body())), t0);
    }
    if (ep.path == "/v1/models") co_return co_await list_models(s);
    if (ep.path == "/v1/feedback") co_return co_await post_feedback(s);
    if (ep.path == "/healthz") co_return co_await s.send(200, "{\"status\":\"ok\"}", json_type);
    if (ep.path == "/readyz") {
      const bool ready = s.state().ready.load();
      std::string body = ready ? "{\"status\":\"ready\"}" : "{\"status\":\"starting\"}";
      co_return co_await s.send(ready ? 200 : 503, std::move(body), json_type);
    }
    if (ep.path == "/metrics") {
      std::string text = s.state().metrics ? s.state().metrics->expose() : std::string();
      co_return co_await s.send(200, std::move(text), "text/plain; version=0.0.4; charset=utf-8");
    }
  }
  if (constexpr std::string_view models = "/v1/models/"; target.starts_with(models) && target.size() > models.size()) {
    if (!get_or_head) co_return co_await not_allowed("/v1/models/{model}", http::verb::get);
    co_return co_await retrieve_model(s, target.substr(models.size()));
  }
  std::string msg = "Invalid URL (" + std::string(req.method_string()) + " " + std::string(target) + ").";
  router::error e{router::errc::bad_request, std::move(msg)};
  co_return co_await refuse(s, 404, e, {}, t0);
}

}  // namespace sluice::gateway
