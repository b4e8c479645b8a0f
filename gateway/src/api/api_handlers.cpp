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

// Reports one finished request to the metrics (labels bounded by gateway_metrics).
void record(http_session& s, const std::string& model, int status, const router::completion* c,
            clock::time_point t0, std::optional<double> ttft_s) {
  if (!s.state().metrics) return;
  request_record r;
  r.model = model;
  r.http_status = status;
  r.duration_s = seconds_since(t0);
  r.ttft_s = ttft_s;
  if (c) {
    r.tokens_input = c->usage_.tokens_input;
    r.tokens_cache_read = c->usage_.tokens_cache_read;
    r.tokens_cache_write = c->usage_.tokens_cache_write;
    r.tokens_output = c->usage_.tokens_output;
    r.cost_usd = c->cost_usd;
    r.overhead_s = std::max(0.0, r.duration_s - c->backend_seconds);
  }
  s.state().metrics->record_request(r);
}

// Counts upstream failures by reason; `mid_stream` = after the response had started.
void record_failure(http_session& s, const std::string& model, const router::error& e, bool mid_stream) {
  if (!s.state().metrics) return;
  std::optional<upstream_error_reason> reason;
  switch (e.code) {
    case router::errc::upstream_timeout: reason = upstream_error_reason::timeout; break;
    case router::errc::upstream_auth: reason = upstream_error_reason::auth; break;
    case router::errc::upstream_rate_limited: reason = upstream_error_reason::rate_limited; break;
    case router::errc::upstream_rejected: reason = upstream_error_reason::http_status; break;
    case router::errc::upstream_error:
      reason = mid_stream ? upstream_error_reason::stream_cut : upstream_error_reason::other;
      break;
    default: break;
  }
  if (reason) s.state().metrics->record_upstream_error(model, *reason);
}

header_list served_headers(const router::completion* c, std::string_view tier) {
  header_list h{{"x-sluice-tier", std::string(tier)}, {"x-sluice-escalated", "false"}};
  if (c) h.emplace_back("x-sluice-cost-usd", cost_header(c->cost_usd));
  return h;
}

response_ids ids_for(const router::chat_request& req, const std::string& request_id, std::string_view model) {
  response_ids ids;
  ids.id = (req.format == router::wire_format::openai_completions ? "cmpl-" : "chatcmpl-") + request_id;
  ids.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  ids.model = std::string(model);
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

// The client went away or a write failed: stop the backend, wait for its last callback, count a 499.
awaitable<bool> abandon(http_session& s, router::generation& gen, event_queue& q, const std::string& tier,
                        clock::time_point t0, std::optional<double> ttft_s) {
  gen.cancel();
  co_await drain(q);
  record(s, tier, 499, nullptr, t0, ttft_s);
  co_return false;
}

// The request was interrupted while its backend ran: the client left (499), or the server cut it at the end
// of its drain grace (503 if nothing was sent yet, else an in-band error event ending the stream).
awaitable<bool> interrupted(http_session& s, router::generation& gen, event_queue& q, const std::string& tier,
                            clock::time_point t0, std::optional<double> ttft_s, bool stream_started) {
  gen.cancel();
  co_await drain(q);
  if (q.interrupted() != event_queue::interruption::server_stopping) {
    record(s, tier, 499, nullptr, t0, ttft_s);
    co_return false;
  }
  const router::error e{router::errc::shutting_down, "The server is shutting down; the request was cut before it "
                                                    "finished. Retry it."};
  record(s, tier, router::info(e.code).http_status, nullptr, t0, ttft_s);
  s.close_after_response();
  if (!stream_started) {
    co_await send_error(s, e);
    co_return false;
  }
  if (co_await s.sse_send(openai_error_body(e))) {
    if (co_await s.sse_send("[DONE]")) co_await s.sse_end();
  }
  co_return false;
}

// The backend failed before anything was sent to the client: a proper error status.
awaitable<bool> fail(http_session& s, const std::string& tier, const router::error& e, clock::time_point t0) {
  record_failure(s, tier, e, false);
  record(s, tier, router::info(e.code).http_status, nullptr, t0, std::nullopt);
  co_return co_await send_error(s, e);
}

awaitable<bool> serve_completion(http_session& s, router::result<router::chat_request> parsed, clock::time_point t0) {
  auto& state = s.state();
  const in_flight counted(state.metrics.get());
  if (!parsed) {
    record(s, "", router::info(parsed.error().code).http_status, nullptr, t0, std::nullopt);
    co_return co_await send_error(s, parsed.error());
  }
  auto req = std::make_shared<router::chat_request>(std::move(*parsed));
  req->request_id = s.request_id();
  const policies::model_config* model = state.policy->find_model(req->model);
  const std::string tier = model ? model->name : std::string();

  auto queue = std::make_shared<event_queue>(co_await asio::this_coro::executor);
  auto gen = state.router->dispatch(req, queue);
  if (!gen) {
    record(s, tier, router::info(gen.error().code).http_status, nullptr, t0, std::nullopt);
    co_return co_await send_error(s, gen.error());
  }
  const auto ids = ids_for(*req, s.request_id(), model->upstream_model.empty() ? model->name : model->upstream_model);
  const bool completions_api = req->format == router::wire_format::openai_completions;
  const client_watch watch(s, queue);

  if (!req->stream) {
    router::completion acc;  // chunks from backends that stream even for non-streaming requests
    for (;;) {
      auto ev = co_await queue->next();
      if (!ev) co_return co_await interrupted(s, **gen, *queue, tier, t0, std::nullopt, false);
      if (auto* c = std::get_if<router::chunk>(&*ev)) {
        acc.text += c->text;
        acc.logprobs.insert(acc.logprobs.end(), c->logprobs.begin(), c->logprobs.end());
        continue;
      }
      auto& done = std::get<1>(*ev);
      if (!done) co_return co_await fail(s, tier, done.error(), t0);
      router::completion& c = *done;
      if (c.text.empty() && !acc.text.empty()) c.text = std::move(acc.text);
      if (c.logprobs.empty()) c.logprobs = std::move(acc.logprobs);
      std::string body;
      if (!c.raw.empty()) body = std::move(c.raw);  // same-wire upstream answer, relayed as is
      else if (completions_api) body = openai_completion_response(c, *req, ids);
      else body = openai_chat_response(c, *req, ids);
      record(s, tier, 200, &c, t0, std::nullopt);
      co_return co_await s.send(200, std::move(body), json_type, served_headers(&c, c.served_by));
    }
  }

  // Streaming. Until the first event, a failure is still a proper error status.
  bool started = false;
  bool first_chunk = true;
  bool relayed_raw = false;
  std::optional<double> ttft_s;
  for (;;) {
    auto ev = co_await queue->next();
    if (!ev) co_return co_await interrupted(s, **gen, *queue, tier, t0, ttft_s, started);
    if (!started) {
      if (auto* done = std::get_if<1>(&*ev); done && !*done) co_return co_await fail(s, tier, done->error(), t0);
      started = true;
      if (!co_await s.sse_begin(served_headers(nullptr, tier))) {
        co_return co_await abandon(s, **gen, *queue, tier, t0, ttft_s);
      }
    }
    if (auto* c = std::get_if<router::chunk>(&*ev)) {
      if (!ttft_s && !c->text.empty()) ttft_s = seconds_since(t0);
      bool ok = true;
      if (!c->raw.empty() && c->raw_format == req->format) {
        if (c->usage_only && !req->include_usage) continue;  // we asked upstream for usage; the client did not
        relayed_raw = true;
        ok = co_await s.sse_send(c->raw);
      } else if (!c->text.empty() || c->finish || first_chunk) {
        std::string json = completions_api ? openai_completion_chunk_json(*c, *req, ids)
                                           : openai_chat_chunk_json(*c, *req, ids, first_chunk);
        ok = co_await s.sse_send(json);
        first_chunk = false;
      }
      if (!ok) co_return co_await abandon(s, **gen, *queue, tier, t0, ttft_s);
      continue;
    }
    auto& done = std::get<1>(*ev);
    if (!done) {
      // After the 200 the only way to signal failure is in-band (PITFALLS.md "Streaming semantics").
      record_failure(s, tier, done.error(), true);
      co_await s.sse_send(openai_error_body(done.error()));
      co_await s.sse_send("[DONE]");
      record(s, tier, router::info(done.error().code).http_status, nullptr, t0, ttft_s);
      co_return co_await s.sse_end();
    }
    router::completion& c = *done;
    if (req->include_usage && !relayed_raw) {  // a relayed upstream stream already carried its usage chunk
      co_await s.sse_send(openai_usage_chunk_json(c.usage_, ids, completions_api));
    }
    co_await s.sse_send("[DONE]");
    record(s, tier, 200, &c, t0, ttft_s);
    co_return co_await s.sse_end();
  }
}

awaitable<bool> list_models(http_session& s) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  bool first = true;
  for (const auto& m : s.state().policy->models) {
    if (!first) out += ',';
    first = false;
    out += "{\"id\":";
    append_json_string(out, m.name);
    out += ",\"object\":\"model\",\"created\":0,\"owned_by\":";
    append_json_string(out, m.kind == policies::model_kind::local ? "sluice-local" : "sluice");
    out += '}';
  }
  out += "]}";
  co_return co_await s.send(200, std::move(out), json_type);
}

struct endpoint {
  std::string_view path;
  http::verb verb;
};
// (At namespace scope: g++ 12 cannot hold a local array in a coroutine frame.)
constexpr endpoint endpoints[] = {
    {"/v1/chat/completions", http::verb::post}, {"/v1/completions", http::verb::post},
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
  auto route = [&](std::string_view path, http::verb want) -> int {  // 1 = match, 0 = other path, -1 = bad method
    if (target != path) return 0;
    return method == want ? 1 : -1;
  };

  for (size_t i = 0; i < std::size(endpoints); ++i) {  // (no range-for over an array: g++ 12 coroutine bug)
    const endpoint& ep = endpoints[i];
    const int m = route(ep.path, ep.verb);
    if (m == 0) continue;
    if (m < 0) {
      router::error e{router::errc::bad_request, "Method " + std::string(req.method_string()) +
                                                     " is not allowed on " + std::string(ep.path) + "."};
      header_list allow;
      allow.emplace_back("Allow", std::string(http::to_string(ep.verb)));
      co_return co_await s.send(405, openai_error_body(e), json_type, allow);
    }
    if (ep.path == "/v1/chat/completions") {
      co_return co_await serve_completion(s, parse_openai_chat_request(std::move(req.body())), t0);
    }
    if (ep.path == "/v1/completions") {
      co_return co_await serve_completion(s, parse_openai_completion_request(std::move(req.body())), t0);
    }
    if (ep.path == "/v1/models") co_return co_await list_models(s);
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
  std::string msg = "Invalid URL (" + std::string(req.method_string()) + " " + std::string(target) + ").";
  router::error e{router::errc::bad_request, std::move(msg)};
  co_return co_await s.send(404, openai_error_body(e), json_type);
}

}  // namespace sluice::gateway
