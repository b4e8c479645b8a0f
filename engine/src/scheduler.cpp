// The scheduler thread: admit, cancel, batch, forward, sample, emit. Observers are always called without
// the lock held, so they may call submit()/cancel() themselves.
#include "scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <new>
#include <stdexcept>

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
  int n_cached = 0;  // tokens whose keys and values are in the blocks
  int n_reused = 0;  // prompt tokens read from the prefix cache instead of computed
  sampling_params params;
  std::shared_ptr<sequence_observer> obs;
  // Block table: blocks[i] holds positions [i * block_tokens, (i + 1) * block_tokens). The first n_shared
  // belong to the radix cache (pinned through `lock`), the rest are this sequence's own.
  std::vector<kv_block_id> blocks;
  int n_shared = 0;
  radix_cache::node* lock = nullptr;
  bool admitted = false;
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

namespace {
int common_prefix_tokens(std::span<const token_id> a, std::span<const token_id> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int(i);
}
int blocks_for(int64_t tokens, int block_tokens) { return int((tokens + block_tokens - 1) / block_tokens); }
int pool_blocks(backend& be, size_t bytes) {
  const size_t n = bytes / std::max<size_t>(be.kv_block_bytes(), 1);
  return int(std::min<size_t>(n, size_t(1) << 30));
}
}  // namespace

scheduler::scheduler(backend& be, const tokenizer& tok, scheduler_options opts)
    : be_(be),
      tok_(tok),
      opts_(opts),
      block_tokens_(be.kv_block_tokens()),
      total_blocks_(pool_blocks(be, opts.kv_cache_bytes)),
      blocks_(total_blocks_),
      radix_(block_tokens_, blocks_) {
  be_.reserve_kv_blocks(total_blocks_);  // throws std::bad_alloc: the caller reports it
  stats_.kv_block_tokens = block_tokens_;
  stats_.kv_blocks_total = total_blocks_;
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
  if (const int need = blocks_for(int64_t(prompt.size()) + p.max_tokens, block_tokens_); need > total_blocks_)
    return error{errc::context_overflow, "prompt (" + std::to_string(prompt.size()) + " tokens) + max_tokens (" +
                                             std::to_string(p.max_tokens) + ") needs " + std::to_string(need) +
                                             " KV blocks; the KV cache holds " + std::to_string(total_blocks_) +
                                             " (raise kv_cache_mib)"};
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
  if (s.admitted) {
    if (r != finish_reason::error) cache_progress(s);  // an error may have left the blocks half written
    release_blocks(s);
  }
  {
    std::lock_guard lk(mu_);
    publish_kv_stats_locked();  // before on_finish: a caller reading stats then sees the blocks returned
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
    std::erase_if(active, [](const auto& s) { return s->done; });
    // Admission in arrival order; one that cannot get its blocks yet waits at the head of the queue (with all
    // behind it) until running sequences finish and free theirs.
    for (size_t i = 0; i < admitted.size(); ++i) {
      sequence& s = *admitted[i];
      if (start(s)) {
        active.push_back(std::move(admitted[i]));
        continue;
      }
      if (active.empty()) {  // nothing will free blocks: cannot happen when submit() checked the size
        finish(s, finish_reason::error, "the KV cache cannot hold this sequence");
        continue;
      }
      std::lock_guard lk(mu_);
      for (size_t j = admitted.size(); j-- > i;) queued_.push_front(std::move(admitted[j]));
      break;
    }
    if (!active.empty()) step(active);
    std::erase_if(active, [](const auto& s) { return s->done; });
    publish_stats(active);
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

void scheduler::publish_stats(const std::vector<std::unique_ptr<sequence>>& active) {
  std::lock_guard lk(mu_);
  stats_.sequences_active = int(active.size());
  stats_.sequences_queued = int(queued_.size());
  publish_kv_stats_locked();
}

void scheduler::publish_kv_stats_locked() {
  stats_.kv_blocks_used = total_blocks_ - blocks_.free_blocks();
  stats_.kv_blocks_cached = radix_.cached_blocks();
  stats_.kv_blocks_evicted = radix_.evicted_blocks();
  stats_.kv_cache_used_fraction = total_blocks_ > 0 ? double(stats_.kv_blocks_used) / total_blocks_ : 0.0;
}

// Gives an admitted sequence its block table: the longest cached prefix of its prompt (whole blocks, the last
// prompt token always computed since its logits give the first generated token), pinned, plus private
// blocks for every other position it can reach (prompt + max_tokens), evicting unpinned cached blocks when
// the pool is short. Reserving everything up front means a running sequence never runs out of blocks.
// Returns false (nothing held) when the pool cannot serve it yet.
bool scheduler::start(sequence& s) {
  const std::span<const token_id> prompt(s.tokens.data(), size_t(s.n_prompt));
  radix_cache::match m;
  if (opts_.prefix_cache) m = radix_.match_prefix(prompt, s.n_prompt - 1);
  radix_.lock(m.last);
  const int need = blocks_for(int64_t(s.n_prompt) + s.params.max_tokens, block_tokens_) - int(m.blocks.size());
  if (blocks_.free_blocks() < need) radix_.evict(need - blocks_.free_blocks());
  if (blocks_.free_blocks() < need) {
    radix_.unlock(m.last);
    return false;
  }
  s.blocks = std::move(m.blocks);
  s.n_shared = int(s.blocks.size());
  blocks_.alloc(need, s.blocks);
  s.lock = m.last;
  s.admitted = true;
  s.n_cached = s.n_reused = s.n_shared * block_tokens_;
  // The prompt goes on into a cached block for a few more tokens (it diverges inside it): copy those
  // positions into this sequence's first own block instead of computing them (copy on write).
  if (opts_.prefix_cache) {
    const radix_cache::partial pm =
        radix_.match_partial(s.lock, prompt.subspan(size_t(s.n_cached)), s.n_prompt - 1 - s.n_cached);
    if (pm.tokens > 0) {
      be_.copy_kv_block(pm.block, s.blocks[size_t(s.n_shared)], pm.tokens);
      s.n_cached += pm.tokens;
      s.n_reused += pm.tokens;
    }
  }
  s.t_start = clock_type::now();
  std::lock_guard lk(mu_);
  stats_.tokens_prefix_cached += uint64_t(s.n_reused);
  return true;
}

// Before a prefill chunk: blocks another sequence has cached since this one was admitted (it was computing
// the same prefix) replace this one's own, and their positions count as cached (plus a copied partial block,
// as at admission).
void scheduler::catch_up(sequence& s) {
  if (!opts_.prefix_cache || s.n_cached >= s.n_prompt) return;
  const std::span<const token_id> prompt(s.tokens.data(), size_t(s.n_prompt));
  radix_cache::match m = radix_.match_prefix(prompt, s.n_prompt - 1);
  const int got = m.tokens(block_tokens_);
  if (got <= s.n_cached) return;
  radix_.lock(m.last);
  radix_.unlock(s.lock);
  const int nb = int(m.blocks.size());
  blocks_.release(std::span<const kv_block_id>(s.blocks.data() + s.n_shared, size_t(nb - s.n_shared)));
  std::copy(m.blocks.begin(), m.blocks.end(), s.blocks.begin());
  s.n_shared = nb;
  s.lock = m.last;
  int now_cached = got;
  const radix_cache::partial pm =
      radix_.match_partial(s.lock, prompt.subspan(size_t(got)), s.n_prompt - 1 - got);
  if (pm.tokens > 0) {  // block nb is this sequence's own and not yet written (got > n_cached)
    be_.copy_kv_block(pm.block, s.blocks[size_t(nb)], pm.tokens);
    now_cached += pm.tokens;
  }
  const int gained = now_cached - s.n_cached;
  s.n_reused += gained;
  s.n_cached = now_cached;
  std::lock_guard lk(mu_);
  stats_.tokens_prefix_cached += uint64_t(gained);
}

// After a step (and at the end): the sequence's full blocks beyond its shared prefix go into the radix cache.
// Where the cache already had those tokens (another sequence computed them at the same time), this
// sequence switches to the cached blocks and frees its duplicates.
void scheduler::cache_progress(sequence& s) {
  if (!opts_.prefix_cache) return;
  const int full = s.n_cached / block_tokens_;
  if (full <= s.n_shared) return;
  const std::span<const token_id> tokens(s.tokens.data(), size_t(full) * size_t(block_tokens_));
  radix_.insert(tokens, std::span<const kv_block_id>(s.blocks.data(), size_t(full)));
  radix_cache::match m = radix_.match_prefix(tokens, int(tokens.size()));
  if (int(m.blocks.size()) != full) throw std::logic_error("radix cache lost a block just inserted");
  radix_.lock(m.last);
  radix_.unlock(s.lock);
  for (int i = s.n_shared; i < full; ++i) {
    if (s.blocks[size_t(i)] == m.blocks[size_t(i)]) continue;
    blocks_.release(std::span<const kv_block_id>(&s.blocks[size_t(i)], 1));
    s.blocks[size_t(i)] = m.blocks[size_t(i)];
  }
  s.n_shared = full;
  s.lock = m.last;
}

void scheduler::release_blocks(sequence& s) {
  radix_.unlock(s.lock);
  s.lock = nullptr;
  blocks_.release(std::span<const kv_block_id>(s.blocks.data() + s.n_shared, s.blocks.size() - size_t(s.n_shared)));
  s.blocks.clear();
  s.n_shared = 0;
  s.admitted = false;
}

// One forward pass: every decoding sequence's next token, then prefill chunks in admission order within the
// step's budget. A sequence whose prompt shares a not-yet-computed prefix with an earlier one still
// prefilling waits for it (and then reads that prefix from the cache instead of computing it again).
void scheduler::step(std::vector<std::unique_ptr<sequence>>& active) {
  std::vector<batch_seq> batch;
  std::vector<sequence*> owners;
  uint64_t prefilled = 0, decoded = 0;
  int decoding = 0;
  for (auto& sp : active)
    if (sp->n_cached >= sp->n_prompt) ++decoding;
  int budget = decoding > 0 ? std::max(opts_.step_token_budget - decoding, block_tokens_) : opts_.prefill_chunk_tokens;
  std::vector<sequence*> prefilling;  // earlier sequences in prefill this step (or waiting)
  for (auto& sp : active) {
    sequence& s = *sp;
    const bool prefill = s.n_cached < s.n_prompt;
    if (prefill) {
      catch_up(s);
      bool wait = false;
      if (opts_.prefix_cache) {
        const std::span<const token_id> mine(s.tokens.data(), size_t(s.n_prompt - 1));
        for (sequence* p : prefilling) {
          const int shared = common_prefix_tokens(mine, std::span<const token_id>(p->tokens.data(), size_t(p->n_prompt)));
          const int useful = shared / block_tokens_ * block_tokens_;  // what p will cache for us
          if (useful > s.n_cached && p->n_cached < useful) wait = true;
        }
      }
      prefilling.push_back(&s);
      if (wait) continue;
    }
    int pending = int(s.tokens.size()) - s.n_cached;
    if (pending <= 0) continue;
    int n = prefill ? std::min(pending, budget) : pending;
    if (n <= 0) continue;
    if (prefill) { budget -= n; prefilled += uint64_t(n); } else { decoded += uint64_t(n); }
    batch_seq b;
    b.blocks = s.blocks;
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
    cache_progress(s);
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
    bool last = s.generated >= s.params.max_tokens || int(s.tokens.size()) > int(s.blocks.size()) * block_tokens_;
    if (last) ev.text += s.ts.flush();
    s.obs->on_token(ev);
    if (last) finish(s, finish_reason::length);
  }
}

}  // namespace sluice::engine
