// See local_backend.h.
#include "local/local_backend.h"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "local/model_identity.h"
#include "ops/gateway_metrics.h"
#include "sluice/engine/engine.h"

namespace sluice::gateway {

namespace {

using router::errc;
using router::error;

router::finish_reason map_finish(engine::finish_reason r) {
  return r == engine::finish_reason::length ? router::finish_reason::length : router::finish_reason::stop;
}

// Records a local model's prompt-token sources in the gateway's metrics as each request finishes (on the engine
// thread; cancelled sequences are skipped), and its KV cache state when /metrics is scraped (collect(), run by
// the registry for as long as the backend that owns the engine is alive).
class engine_metrics_recorder {
 public:
  engine_metrics_recorder(std::shared_ptr<gateway_metrics> m, const std::string& model, const engine::engine& eng)
      : metrics_(std::move(m)), model_(metrics_->model_label(model)), engine_(eng) {}

  void record(const engine::finish_info& info) {
    if (info.reason == engine::finish_reason::cancelled) return;
    metrics_->engine_prompt_tokens_total.with({model_, "cached"}).inc(info.tokens_cached);
    metrics_->engine_prompt_tokens_total.with({model_, "computed"}).inc(info.tokens_prompt - info.tokens_cached);
  }

  // The engine's stats are a copy taken under its lock.
  void collect() {
    const engine::stats st = engine_.get_stats();
    metrics_->engine_kv_cache_blocks.with({model_, "total"}).set(st.kv_blocks_total);
    metrics_->engine_kv_cache_blocks.with({model_, "used"}).set(st.kv_blocks_used);
    metrics_->engine_kv_cache_blocks.with({model_, "cached"}).set(st.kv_blocks_cached);
    std::lock_guard lock(mutex_);
    if (st.kv_blocks_evicted > evicted_seen_) {
      metrics_->engine_kv_cache_evicted_blocks_total.with({model_}).inc(double(st.kv_blocks_evicted - evicted_seen_));
      evicted_seen_ = st.kv_blocks_evicted;
    }
  }

 private:
  std::shared_ptr<gateway_metrics> metrics_;
  std::string model_;
  const engine::engine& engine_;  // outlives every sequence it observes, and collect() is unregistered before it dies
  std::mutex mutex_;
  uint64_t evicted_seen_ = 0;  // the engine's count is cumulative; the counter gets the difference
};

class local_generation final : public router::generation, public engine::sequence_observer {
 public:
  local_generation(std::weak_ptr<engine::engine> eng, std::shared_ptr<router::generation_sink> sink, bool logprobs,
                   std::string model_name, std::shared_ptr<engine_metrics_recorder> recorder,
                   std::vector<std::string> stops)
      : engine_(std::move(eng)),
        sink_(std::move(sink)),
        logprobs_(logprobs),
        model_name_(std::move(model_name)),
        recorder_(std::move(recorder)),
        stops_(std::move(stops)) {}

  void set_id(engine::sequence_id id) {
    std::lock_guard lock(mutex_);
    id_ = id;
    if (cancel_requested_) cancel_locked();
  }

  void cancel() override {
    std::lock_guard lock(mutex_);
    cancel_requested_ = true;
    if (id_) cancel_locked();
  }

  void on_token(const engine::token_event& ev) override {
    if (!stops_.empty() && !ev.token_text.empty()) {  // (only when a stop sequence could end it: see on_finish)
      ++tokens_with_text_;
      raw_ += ev.token_text;
    }
    router::chunk c;
    c.text = ev.text;
    if (logprobs_) {
      router::token_logprob lp;
      lp.token = ev.token_text;
      lp.logprob = ev.logprob;
      for (const auto& [t, p] : ev.top) lp.top.emplace_back(t, p);
      c.logprobs.push_back(lp);
      acc_.logprobs.push_back(std::move(lp));
    }
    if (c.text.empty() && c.logprobs.empty()) return;
    acc_.text += c.text;
    sink_->on_chunk(std::move(c));
  }

  void on_finish(const engine::finish_info& info) override {
    if (recorder_) recorder_->record(info);
    if (info.reason == engine::finish_reason::cancelled) {
      sink_->on_done(error{errc::cancelled, "The client cancelled the request."});
      return;
    }
    if (info.reason == engine::finish_reason::error) {
      sink_->on_done(error{errc::internal, "The local model failed: " + info.message});
      return;
    }
    acc_.finish = map_finish(info.reason);
    if (info.reason == engine::finish_reason::stop) acc_.stop_sequence = matched_stop(info.tokens_generated);
    acc_.usage_.tokens_input = info.tokens_prompt;
    acc_.usage_.tokens_cache_read = info.tokens_cached;
    acc_.usage_.tokens_output = info.tokens_generated;
    acc_.model = model_name_;
    router::chunk last;
    last.finish = acc_.finish;
    last.usage_ = acc_.usage_;
    sink_->on_chunk(std::move(last));
    sink_->on_done(std::move(acc_));
  }

 private:
  void cancel_locked() {
    if (auto eng = engine_.lock()) eng->cancel(*id_);  // a stopped engine has already finished the sequence
  }

  // Which stop sequence ended the answer, or "" when the model ended it itself. The engine reports both as
  // finish_reason::stop; an end-of-generation token is the one generated token that reaches on_token without
  // text of its own (or not at all), so every generated token having text means a stop sequence matched: the
  // one that starts where the served text ends.
  std::string matched_stop(int tokens_generated) const {
    if (stops_.empty() || tokens_generated <= 0 || tokens_with_text_ != tokens_generated) return {};
    const size_t end = acc_.text.size();
    for (const auto& s : stops_) {
      if (raw_.compare(end, s.size(), s) == 0) return s;
    }
    size_t best = std::string::npos;
    std::string found;
    for (const auto& s : stops_) {  // (token bytes and served text differ in where they start)
      const size_t at = raw_.find(s);
      if (at < best) {
        best = at;
        found = s;
      }
    }
    return found;
  }

  std::weak_ptr<engine::engine> engine_;  // the backend owns it; stop() destroys it
  std::shared_ptr<router::generation_sink> sink_;
  bool logprobs_;
  std::string model_name_;
  std::shared_ptr<engine_metrics_recorder> recorder_;
  std::vector<std::string> stops_;  // the request's stop sequences
  std::string raw_;                 // every generated token's bytes (only with stop sequences)
  int tokens_with_text_ = 0;        // generated tokens that had bytes of their own
  router::completion acc_;
  std::mutex mutex_;
  std::optional<engine::sequence_id> id_;
  bool cancel_requested_ = false;
};

class local_backend final : public router::backend {
 public:
  local_backend(std::unique_ptr<engine::engine> eng, std::string identity,
                std::shared_ptr<engine_metrics_recorder> recorder, std::shared_ptr<gateway_metrics> metrics)
      : engine_(std::move(eng)),
        identity_(std::move(identity)),
        recorder_(std::move(recorder)),
        metrics_(std::move(metrics)) {
    if (metrics_ && recorder_) collector_ = metrics_->add_collector([r = recorder_.get()] { r->collect(); });
  }
  ~local_backend() override { stop_collecting(); }

  std::string identity() const override { return identity_; }

  // Cancels what is still running and joins the engine's threads (the engine's destructor does both).
  void stop() override {
    stop_collecting();
    engine_.reset();
  }

  router::result<std::shared_ptr<router::generation>> start(std::shared_ptr<const router::chat_request> req,
                                                            const policies::model_config& model,
                                                            std::shared_ptr<router::generation_sink> sink) override {
    std::vector<engine::token_id> prompt;
    if (req->format == router::wire_format::openai_completions) {
      prompt = engine_->tokenize(req->prompt, engine_->info().add_bos, /*parse_special=*/false);
    } else {
      std::vector<engine::chat_message> msgs;
      for (const auto& m : req->messages) {
        if (m.parts_non_text > 0 && m.content.empty()) {
          return error{errc::not_implemented, "The local model '" + model.name + "' reads text only.", "messages"};
        }
        const char* role = m.role_ == router::role::developer ? "system" : router::to_string(m.role_);
        msgs.push_back({role, m.content});
      }
      auto tokens = engine_->tokenize_chat(msgs, /*add_generation_prompt=*/true);
      if (!tokens) return error{errc::bad_request, tokens.error().message, "messages"};
      prompt = std::move(*tokens);
    }
    if (req->n != 1) {
      return error{errc::not_implemented, "The local model '" + model.name + "' returns one choice per request (n = 1).",
                   "n"};
    }
    if (req->has_tools) {
      return error{errc::not_implemented, "The local model '" + model.name + "' does not support tools.", "tools"};
    }
    engine::sampling_params p;
    p.temperature = static_cast<float>(req->sampling.temperature.value_or(1.0));
    p.top_p = static_cast<float>(req->sampling.top_p.value_or(1.0));
    p.top_k = req->sampling.top_k.value_or(0);
    p.min_p = static_cast<float>(req->sampling.min_p.value_or(0.0));
    p.frequency_penalty = static_cast<float>(req->sampling.frequency_penalty);
    p.presence_penalty = static_cast<float>(req->sampling.presence_penalty);
    p.seed = req->sampling.seed;
    const int room = engine_->info().context_tokens - static_cast<int>(prompt.size());
    if (room <= 0) {
      return error{errc::bad_request,
                   "The prompt has " + std::to_string(prompt.size()) + " tokens; the local model '" + model.name +
                       "' has a context of " + std::to_string(engine_->info().context_tokens) + " tokens.",
                   "messages"};
    }
    p.max_tokens = req->max_output_tokens ? *req->max_output_tokens : room;
    if (p.max_tokens > room) {
      return error{errc::bad_request,
                   "max_tokens (" + std::to_string(p.max_tokens) + ") plus the prompt (" +
                       std::to_string(prompt.size()) + " tokens) exceed the local model's context of " +
                       std::to_string(engine_->info().context_tokens) + " tokens.",
                   "max_tokens"};
    }
    p.stop = req->stop;
    p.logprobs = req->logprobs;
    p.top_logprobs = req->top_logprobs;

    auto gen = std::make_shared<local_generation>(engine_, std::move(sink), req->logprobs, model.name, recorder_,
                                                  req->stop);
    auto id = engine_->submit(std::move(prompt), p, gen);
    if (!id) {
      const errc code = id.error().code == engine::errc::overloaded         ? errc::overloaded
                        : id.error().code == engine::errc::context_overflow ? errc::bad_request
                                                                            : errc::bad_request;
      return error{code, id.error().message};
    }
    gen->set_id(*id);
    return std::shared_ptr<router::generation>(gen);
  }

 private:
  // Unregisters the scrape-time collector, waiting for a scrape that runs it: the engine may go after this.
  void stop_collecting() {
    if (collector_) metrics_->remove_collector(std::exchange(collector_, 0));
  }

  std::shared_ptr<engine::engine> engine_;
  std::string identity_;  // "sha256:..." of the GGUF
  std::shared_ptr<engine_metrics_recorder> recorder_;
  std::shared_ptr<gateway_metrics> metrics_;
  uint64_t collector_ = 0;  // the registry's id for recorder_->collect(), 0 when none
};

}  // namespace

router::result<std::shared_ptr<router::backend>> make_local_backend(const policies::model_config& model,
                                                                    std::shared_ptr<gateway_metrics> metrics) {
  engine::load_options o;
  o.path = model.local.gguf_path;
  o.threads = model.local.threads;
  o.context_tokens = model.local.context_tokens;
  o.max_sequences = model.local.max_sequences;
  o.chat_template = model.local.chat_template;
  o.kv_cache_bytes = size_t(model.local.kv_cache_mib) << 20;
  o.prefix_cache = model.local.prefix_cache;
  o.step_token_budget = model.local.step_token_budget;
  o.device = model.local.device;
  auto eng = engine::engine::load(o);
  if (!eng) return error{errc::internal, eng.error().message};
  if (!(*eng)->info().device_note.empty())
    std::fprintf(stderr, "sluice: local model '%s': %s\n", model.name.c_str(), (*eng)->info().device_note.c_str());
  auto id = gguf_identity(model.local.gguf_path);  // what an acceptance model trained on its answers must match
  if (!id) return id.error();
  auto recorder = metrics ? std::make_shared<engine_metrics_recorder>(metrics, model.name, **eng) : nullptr;
  return std::shared_ptr<router::backend>(
      std::make_shared<local_backend>(std::move(*eng), std::move(*id), std::move(recorder), std::move(metrics)));
}

}  // namespace sluice::gateway
