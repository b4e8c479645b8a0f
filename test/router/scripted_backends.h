// Test doubles for the router's tests: a client sink that records what it receives, tiers that answer from a
// script (synchronously, or never), and timers that fire when the test advances a manual clock.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sluice/router/router.h"

namespace sluice::test {

using router::chunk;
using router::completion;

// Records what the client side receives, in order.
struct client_sink : router::generation_sink {
  std::vector<std::string> events;  // "decision", "chunk", "done"
  std::vector<chunk> chunks;
  std::vector<std::shared_ptr<const router::route_decision>> decisions;
  std::optional<router::result<completion>> done;
  int done_calls = 0;
  void on_chunk(chunk c) override {
    events.push_back("chunk");
    chunks.push_back(std::move(c));
  }
  void on_decision(std::shared_ptr<const router::route_decision> d) override {
    events.push_back("decision");
    decisions.push_back(std::move(d));
  }
  void on_done(router::result<completion> r) override {
    events.push_back("done");
    ++done_calls;
    done = std::move(r);
  }
  const router::route_decision& last() const { return *decisions.back(); }
};

// One scripted answer of a tier.
struct script {
  std::string text;
  std::vector<double> logprobs;  // one per token; the text is split evenly among them
  router::finish_reason finish = router::finish_reason::stop;
  router::usage usage_{100, 0, 0, 2};
  std::optional<router::error> fail;  // delivered via on_done
  bool fail_at_start = false;         // returned by start()
  bool fail_after_text = false;       // `text` is streamed, then `fail` is delivered
  bool hang = false;                  // never answers until cancelled
};

struct scripted_generation : router::generation {
  std::shared_ptr<router::generation_sink> sink;
  bool cancelled = false;
  bool finished = false;
  void cancel() override {
    if (cancelled) return;
    cancelled = true;
    if (!finished) {
      finished = true;
      sink->on_done(router::error{router::errc::cancelled, "cancelled"});
    }
  }
};

// A tier that answers from its script queue, synchronously (or never, for `hang`).
struct scripted_backend : router::backend {
  std::deque<script> scripts;
  std::vector<std::shared_ptr<const router::chat_request>> requests;
  std::vector<std::shared_ptr<scripted_generation>> generations;
  router::result<std::shared_ptr<router::generation>> start(std::shared_ptr<const router::chat_request> req,
                                                            const sluice::policies::model_config&,
                                                            std::shared_ptr<router::generation_sink> sink) override {
    requests.push_back(req);
    REQUIRE_FALSE(scripts.empty());
    script s = scripts.front();
    scripts.pop_front();
    if (s.fail_at_start) return *s.fail;
    auto g = std::make_shared<scripted_generation>();
    g->sink = sink;
    generations.push_back(g);
    if (s.hang) return std::shared_ptr<router::generation>(g);
    if (s.fail) {
      if (s.fail_after_text) {
        chunk ch;
        ch.text = s.text;
        sink->on_chunk(std::move(ch));
      }
      g->finished = true;
      sink->on_done(*s.fail);
      return std::shared_ptr<router::generation>(g);
    }
    completion c;
    c.text = s.text;
    c.finish = s.finish;
    c.usage_ = s.usage_;
    for (size_t i = 0; i < s.logprobs.size(); ++i) {
      chunk ch;
      ch.text = i == 0 ? s.text : "";
      router::token_logprob lp;
      lp.token = ch.text;
      lp.logprob = s.logprobs[i];
      lp.top = {{ch.text, s.logprobs[i]}, {" other", -5.0}};
      if (req->logprobs) ch.logprobs.push_back(lp);
      if (req->logprobs) c.logprobs.push_back(lp);
      sink->on_chunk(std::move(ch));
    }
    if (s.logprobs.empty()) {
      chunk ch;
      ch.text = s.text;
      sink->on_chunk(std::move(ch));
    }
    chunk last;
    last.finish = s.finish;
    last.usage_ = s.usage_;
    sink->on_chunk(std::move(last));
    g->finished = true;
    sink->on_done(std::move(c));
    return std::shared_ptr<router::generation>(g);
  }
};

// Fires callbacks when the test advances time.
struct manual_timers : router::timer_service {
  struct entry : router::timer_handle {
    std::chrono::milliseconds due;
    std::function<void()> fn;
    bool cancelled = false;
    void cancel() override { cancelled = true; }
  };
  std::chrono::milliseconds now{0};
  std::vector<std::shared_ptr<entry>> entries;
  std::shared_ptr<router::timer_handle> after(std::chrono::milliseconds d, std::function<void()> fn) override {
    auto e = std::make_shared<entry>();
    e->due = now + d;
    e->fn = std::move(fn);
    entries.push_back(e);
    return e;
  }
  void advance(std::chrono::milliseconds d) {
    now += d;
    for (size_t i = 0; i < entries.size(); ++i) {
      auto e = entries[i];
      if (!e->cancelled && e->due <= now) {
        e->cancelled = true;
        e->fn();
      }
    }
  }
  size_t pending() const {
    size_t n = 0;
    for (auto& e : entries) n += e->cancelled ? 0 : 1;
    return n;
  }
};

}  // namespace sluice::test
