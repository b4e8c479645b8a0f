// Benchmark driver for the Sluice side of bench/engine/run: loads a model through the public engine API and
// measures prefill (one prompt of N tokens) and decode (M greedy tokens after a 1-token prompt) speed.
// Prints one line per measurement: "prefill_tps <x>" / "decode_tps <x>"; with --parallel N also the
// aggregate decode speed of N sequences generated together ("batch_decode_tps"). Token ids are the same
// deterministic sequence the llama.cpp side uses: t_i = (1000 + 37 i) mod n_vocab. The prefix cache is off
// (repeated rounds would read the prompt from it). With --gap N: N streams decode while a --prefill-token
// prompt arrives; prints the longest gap between two tokens of a stream until that prompt's first token
// ("gap_ms") and its time to first token ("gap_prefill_ttft_ms"), with --budget B tokens per step.
#include <chrono>
#include <ctime>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sluice/engine/engine.h"

namespace eng = sluice::engine;

namespace {
class waiter final : public eng::sequence_observer {
 public:
  void on_token(const eng::token_event&) override { ++tokens; }
  void on_finish(const eng::finish_info& i) override {
    std::lock_guard lk(mu_);
    info = i;
    done_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return done_; });
  }
  int tokens = 0;
  eng::finish_info info;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

double run(eng::engine& e, std::vector<eng::token_id> prompt, int max_tokens, eng::finish_info& info) {
  eng::sampling_params sp;
  sp.temperature = 0.0f;
  sp.max_tokens = max_tokens;
  auto obs = std::make_shared<waiter>();
  auto t0 = std::chrono::steady_clock::now();
  auto id = e.submit(std::move(prompt), sp, obs);
  if (!id) {
    std::fprintf(stderr, "submit: %s\n", id.error().message.c_str());
    std::exit(1);
  }
  obs->wait();
  info = obs->info;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

// Stamps each token's arrival (steady clock) of a running stream.
class stamper final : public eng::sequence_observer {
 public:
  void on_token(const eng::token_event&) override {
    std::lock_guard lk(mu);
    times.push_back(std::chrono::steady_clock::now());
  }
  void on_finish(const eng::finish_info&) override {}
  std::mutex mu;
  std::vector<std::chrono::steady_clock::time_point> times;
};

// N streams decode; once each has a few tokens, a long prompt arrives. The longest gap of any stream between
// the prompt's arrival and its first token.
void gap(eng::engine& e, int streams, int n_prompt) {
  const int V = e.info().n_vocab;
  eng::sampling_params sp;
  sp.temperature = 0.0f;
  sp.max_tokens = 400;
  std::vector<std::shared_ptr<stamper>> ss;
  std::vector<eng::sequence_id> ids;
  for (int i = 0; i < streams; ++i) {
    ss.push_back(std::make_shared<stamper>());
    auto id = e.submit({eng::token_id((2000 + 101 * i) % V), eng::token_id((77 * i + 5) % V)}, sp, ss.back());
    if (!id) std::exit(1);
    ids.push_back(*id);
  }
  for (auto& s : ss)
    for (;;) {
      {
        std::lock_guard lk(s->mu);
        if (s->times.size() >= 4) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  std::vector<eng::token_id> prompt;
  for (int i = 0; i < n_prompt; ++i) prompt.push_back(eng::token_id((3000 + 53 * i) % V));
  eng::finish_info info;
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
  };
  const double c0 = cpu_now();
  const auto t0 = std::chrono::steady_clock::now();
  run(e, prompt, 1, info);
  const auto t1 = std::chrono::steady_clock::now();
  const double c1 = cpu_now();
  size_t steps = 0;  // steps in the window: stream 0's tokens in it
  {
    std::lock_guard lk(ss[0]->mu);
    for (auto t : ss[0]->times) steps += t >= t0 && t <= t1;
  }
  double worst = 0.0;
  for (auto& s : ss) {
    std::lock_guard lk(s->mu);
    for (size_t j = 1; j < s->times.size(); ++j)
      if (s->times[j] >= t0 && s->times[j - 1] <= t1)
        worst = std::max(worst, std::chrono::duration<double, std::milli>(s->times[j] - s->times[j - 1]).count());
  }
  for (auto id : ids) e.cancel(id);
  std::printf("gap_ms %.1f (%d streams, %d-token prompt)\ngap_prefill_ttft_ms %.1f\n", worst, streams, n_prompt,
              std::chrono::duration<double, std::milli>(t1 - t0).count());
  // CPU time (all threads, spinning included) per step while the prompt was prefilled: with 1 thread, what
  // a step costs on an idle core whatever the machine's load.
  if (steps > 0) std::printf("gap_cpu_ms_per_step %.1f (%zu steps)\n", (c1 - c0) / double(steps), steps);
}

int main(int argc, char** argv) {
  std::string model, device = "cpu";
  int threads = 2, n_prefill = 512, n_decode = 128, reps = 1, parallel = 0, gap_streams = 0, budget = 32;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model") model = argv[i + 1];
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--prefill") n_prefill = std::atoi(argv[i + 1]);
    else if (a == "--decode") n_decode = std::atoi(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--parallel") parallel = std::atoi(argv[i + 1]);
    else if (a == "--device") device = argv[i + 1];
    else if (a == "--gap") gap_streams = std::atoi(argv[i + 1]);
    else if (a == "--budget") budget = std::atoi(argv[i + 1]);
  }
  eng::load_options lo;
  lo.path = model;
  lo.threads = threads;
  lo.context_tokens = 1024;
  lo.max_sequences = std::max({parallel, gap_streams + 1, 1});
  lo.prefix_cache = false;
  lo.step_token_budget = budget;
  lo.device = device;  // cpu | cuda (bench/engine/gpu_run)
  auto e = eng::engine::load(lo);
  if (!e) {
    std::fprintf(stderr, "load: %s\n", e.error().message.c_str());
    return 1;
  }
  const int V = (*e)->info().n_vocab;
  std::vector<eng::token_id> prompt;
  for (int i = 0; i < n_prefill; ++i) prompt.push_back(eng::token_id((1000 + 37 * i) % V));
  eng::finish_info info;
  run(**e, {eng::token_id(1000 % V)}, 8, info);  // warm-up: pages in the weights
  if (gap_streams > 0) {
    for (int r = 0; r < reps; ++r) gap(**e, gap_streams, n_prefill);
    return 0;
  }
  for (int r = 0; r < reps; ++r) {
    if (n_prefill > 0) {
      run(**e, prompt, 1, info);
      std::printf("prefill_tps %.2f\n", info.tokens_prompt * 1000.0 / info.prefill_ms);
    }
    if (n_decode > 0) {
      run(**e, {eng::token_id(1000 % V)}, n_decode + 1, info);
      // The first token comes from the prompt's forward pass; decode speed counts the following ones.
      std::printf("decode_tps %.2f\n", (info.tokens_generated - 1) * 1000.0 / info.decode_ms);
    }
    if (parallel > 1 && n_decode > 0) {  // continuous batching: aggregate decode speed of N sequences
      std::vector<std::shared_ptr<waiter>> ws;
      eng::sampling_params sp;
      sp.temperature = 0.0f;
      sp.max_tokens = n_decode;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < parallel; ++i) {
        ws.push_back(std::make_shared<waiter>());
        if (!(*e)->submit({eng::token_id((1000 + 101 * i) % V)}, sp, ws.back())) return 1;
      }
      int total = 0;
      for (auto& w : ws) {
        w->wait();
        total += w->info.tokens_generated;
      }
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("batch_decode_tps %.2f (%d sequences)\n", total / s, parallel);
    }
    std::fflush(stdout);
  }
  return 0;
}
