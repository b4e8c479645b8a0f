// The scheduler thread: admit, cancel, batch, forward, sample, emit. Observers are always called without
// the lock held, so they may call submit()/cancel() themselves.
#include "scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <new>

#include "sampler.h"
#include "text_stream.h"

namespace sluice::engine {

using clock_type = std::chrono::steady_clock;

struct scheduler::sequence {
  sequence(sequence_id i, std::vector<token_id> prompt, const sampling_params& p, std::shared_ptr<sequence_observer> o,
           const tokenizer& tok)
      : id(i), tokens(std::move(prompt)), n_prompt(int(tokens.size())), params(p), obs(std::move(o)), smp(p),
        ts(tok, p.stop) {}
  sequence_id id;
  std::vector<token_id> tokens;  // prompt, then generated tokens
  int n_prompt;
  int n_cached = 0;  // tokens already written to the KV cache
  int n_reused = 0;  // prompt tokens copied from another sequence's cache instead of computed
  sampling_params params;
  std::shared_ptr<sequence_observer> obs;
  std::unique_ptr<kv_cache> kv;
  sampler smp;
  text_stream ts;
  int generated = 0;
  bool done = false;
  clock_type::time_point t_start{}, t_first{};
};

namespace {
double ms_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

// Shorter shared prefixes are recomputed: the copy and the search cost more than they save.
constexpr int min_prefix_reuse_tokens = 8;

scheduler::scheduler(backend& be, const tokenizer& tok, scheduler_options opts)
    : be_(be), tok_(tok), opts_(opts), prefix_(opts.prefix_cache_bytes) {
  thread_ = std::thread([this] { loop(); });
}

scheduler::~scheduler() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

result<sequence_id> scheduler::submit(std::vector<token_id> prompt, const sampling_params& p,
                                      std::shared_ptr<sequence_observer> observer) {
  auto bad = [](std::string m) { return error{errc::invalid_argument, std::move(m)}; };
  if (!observer) return bad("observer is null");
  if (prompt.empty()) return bad("prompt is empty");
  for (token_id t : prompt)
    if (t < 0 || t >= tok_.n_vocab()) return bad("prompt token id " + std::to_string(t) + " is out of range");
  if (p.max_tokens < 1) return bad("max_tokens must be >= 1");
  if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) return bad("temperature must be >= 0");
  if (p.top_k < 0) return bad("top_k must be >= 0");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) return bad("top_p must be in (0, 1]");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) return bad("min_p must be in [0, 1]");
  if (!std::isfinite(p.frequency_penalty) || !std::isfinite(p.presence_penalty)) return bad("penalties must be finite");
  if (p.top_logprobs < 0 || p.top_logprobs > 20) return bad("top_logprobs must be in 0..20");
  for (auto& s : p.stop)
    if (s.empty()) return bad("stop sequences must not be empty");
  if (int64_t(prompt.size()) + p.max_tokens > opts_.context_tokens)
    return error{errc::context_overflow, "prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                                             std::to_string(p.max_tokens) + ") exceeds the context of " +
                                             std::to_string(opts_.context_tokens) + " tokens"};
  std::lock_guard lk(mu_);
  if (stopping_) return error{errc::overloaded, "the engine is shutting down"};
  if (int(queued_.size()) >= opts_.max_queued)
    return error{errc::overloaded, "too many queued sequences (" + std::to_string(queued_.size()) + ")"};
  sequence_id id = next_id_++;
  queued_.push_back(std::make_unique<sequence>(id, std::move(prompt), p, std::move(observer), tok_));
  live_.insert(id);
  cv_.notify_all();
  return id;
}

void scheduler::cancel(sequence_id id) {
  {
    std::lock_guard lk(mu_);
    if (!live_.count(id)) return;
    cancels_.insert(id);
  }
  cv_.notify_all();
}

stats scheduler::get_stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

void scheduler::finish(sequence& s, finish_reason r, std::string message) {
  if (s.done) return;
  s.done = true;
  auto now = clock_type::now();
  finish_info info;
  info.reason = r;
  info.message = std::move(message);
  info.tokens_prompt = s.n_prompt;
  info.tokens_generated = s.generated;
  info.tokens_cached = s.n_reused;
  if (s.t_start != clock_type::time_point{}) {
    bool first = s.generated > 0;
    info.prefill_ms = ms_between(s.t_start, first ? s.t_first : now);
    info.decode_ms = first ? ms_between(s.t_first, now) : 0.0;
  }
  if (s.kv && opts_.prefix_cache_bytes > 0 && s.n_cached >= min_prefix_reuse_tokens) {
    prefix_.insert(std::vector<token_id>(s.tokens.begin(), s.tokens.begin() + s.n_cached), std::move(s.kv));
  }
  s.kv.reset();
  {
    std::lock_guard lk(mu_);
    live_.erase(s.id);
    cancels_.erase(s.id);
  }
  s.obs->on_finish(info);
}

void scheduler::loop() {
  std::vector<std::unique_ptr<sequence>> active;
  for (;;) {
    std::vector<std::unique_ptr<sequence>> admitted, cancelled_queued;
    std::unordered_set<sequence_id> cancels;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !queued_.empty() || !active.empty() || !cancels_.empty(); });
      if (stopping_) break;
      cancels.swap(cancels_);
      for (auto it = queued_.begin(); it != queued_.end();) {
        if (cancels.count((*it)->id)) {
          cancelled_queued.push_back(std::move(*it));
          it = queued_.erase(it);
        } else {
          ++it;
        }
      }
      while (!queued_.empty() && int(active.size() + admitted.size()) < opts_.max_sequences) {
        admitted.push_back(std::move(queued_.front()));
        queued_.pop_front();
      }
    }
    for (auto& s : cancelled_queued) finish(*s, finish_reason::cancelled);
    for (auto& s : active)
      if (cancels.count(s->id)) finish(*s, finish_reason::cancelled);
    for (auto& s : admitted) {
      try {
        start(*s, active);
        active.push_back(std::move(s));
      } catch (const std::bad_alloc&) {
        finish(*s, finish_reason::error, "out of memory for the KV cache");
      }
    }
    std::erase_if(active, [](const auto& s) { return s->done; });
    if (!active.empty()) step(active);
    std::erase_if(active, [](const auto& s) { return s->done; });
    std::lock_guard lk(mu_);
    stats_.sequences_active = int(active.size());
    stats_.sequences_queued = int(queued_.size());
    uint64_t used = 0;
    for (auto& s : active) used += uint64_t(s->n_cached);
    stats_.kv_cache_used_fraction = double(used) / (double(opts_.max_sequences) * opts_.context_tokens);
  }
  std::vector<std::unique_ptr<sequence>> rest;
  {
    std::lock_guard lk(mu_);
    for (auto& s : queued_) rest.push_back(std::move(s));
    queued_.clear();
  }
  for (auto& s : active) finish(*s, finish_reason::cancelled);
  for (auto& s : rest) finish(*s, finish_reason::cancelled);
}

// Gives an admitted sequence its cache, starting from the longest prompt prefix already computed: by a running
// sequence (the positions it has written) or a finished one in the prefix cache. The last prompt token is
// always computed, since its logits give the first generated token.
void scheduler::start(sequence& s, const std::vector<std::unique_ptr<sequence>>& active) {
  s.kv = be_.new_cache(s.n_prompt + s.params.max_tokens);
  s.t_start = clock_type::now();
  if (opts_.prefix_cache_bytes == 0) return;
  const std::span<const token_id> prompt(s.tokens.data(), size_t(s.n_prompt));
  const int reuse_max = s.n_prompt - 1;
  const kv_cache* donor = nullptr;
  int best = 0;
  for (const auto& a : active) {
    const int n = std::min(common_prefix(prompt, std::span<const token_id>(a->tokens.data(), size_t(a->n_cached))),
                           reuse_max);
    if (n > best) {
      best = n;
      donor = a->kv.get();
    }
  }
  const prefix_cache::match m = prefix_.find(prompt, reuse_max);
  if (m.tokens > best) {
    best = m.tokens;
    donor = m.kv;
  }
  if (best < min_prefix_reuse_tokens || donor == nullptr) return;
  be_.copy_prefix(*donor, *s.kv, best);
  s.n_cached = s.n_reused = best;
  std::lock_guard lk(mu_);
  stats_.tokens_prefix_cached += uint64_t(best);
}

void scheduler::step(std::vector<std::unique_ptr<sequence>>& active) {
  std::vector<batch_seq> batch;
  std::vector<sequence*> owners;
  int budget = opts_.step_token_budget;
  uint64_t prefilled = 0, decoded = 0;
  for (auto& sp : active) {
    sequence& s = *sp;
    int pending = int(s.tokens.size()) - s.n_cached;
    if (pending <= 0) continue;
    bool prefill = s.n_cached < s.n_prompt;
    int n = prefill ? std::min(pending, budget) : pending;
    if (n <= 0) continue;
    if (prefill) { budget -= n; prefilled += uint64_t(n); } else { decoded += uint64_t(n); }
    batch_seq b;
    b.kv = s.kv.get();
    b.tokens = std::span<const token_id>(s.tokens.data() + s.n_cached, size_t(n));
    b.pos0 = s.n_cached;
    b.want = s.n_cached + n == int(s.tokens.size()) ? batch_seq::logits::last : batch_seq::logits::none;
    batch.push_back(b);
    owners.push_back(&s);
  }
  if (batch.empty()) return;
  try {
    be_.forward(batch, logits_);
  } catch (const std::exception& e) {  // out of memory for scratch buffers: fail these sequences, keep serving
    for (sequence* s : owners) finish(*s, finish_reason::error, std::string("forward pass failed: ") + e.what());
    return;
  }
  {
    std::lock_guard lk(mu_);
    stats_.tokens_prefilled += prefilled;
    stats_.tokens_decoded += decoded;
  }
  const int V = tok_.n_vocab();
  int row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    sequence& s = *owners[i];
    s.n_cached += int(batch[i].tokens.size());
    if (batch[i].want == batch_seq::logits::none) continue;
    std::span<float> lg(logits_.data() + size_t(row) * V, size_t(V));
    ++row;
    sample_result r = s.smp.sample(lg);
    s.tokens.push_back(r.token);
    if (++s.generated == 1) s.t_first = clock_type::now();
    token_event ev;
    ev.token = r.token;
    ev.logprob = r.logprob;
    ev.token_text = tok_.token_bytes(r.token);
    for (auto& [id, lp] : r.top) ev.top.emplace_back(tok_.token_bytes(id), lp);
    if (tok_.is_end_of_generation(r.token)) {
      ev.token_text.clear();
      ev.text = s.ts.flush();
      if (!ev.text.empty()) s.obs->on_token(ev);
      finish(s, finish_reason::stop);
      continue;
    }
    auto st = s.ts.push(r.token);
    ev.text = std::move(st.text);
    if (st.stopped) {
      s.obs->on_token(ev);
      finish(s, finish_reason::stop);
      continue;
    }
    bool last = s.generated >= s.params.max_tokens || int(s.tokens.size()) > s.kv->capacity_tokens();
    if (last) ev.text += s.ts.flush();
    s.obs->on_token(ev);
    if (last) finish(s, finish_reason::length);
  }
}

}  // namespace sluice::engine
