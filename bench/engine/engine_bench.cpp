// Benchmark driver for the Sluice side of bench/engine/run: loads a model through the public engine API and
// measures prefill (one prompt of N tokens) and decode (M greedy tokens after a 1-token prompt) speed.
// Prints one line per measurement: "prefill_tps <x>" / "decode_tps <x>"; with --parallel N also the
// aggregate decode speed of N sequences generated together ("batch_decode_tps"). Token ids are the same
// deterministic sequence the llama.cpp side uses: t_i = (1000 + 37 i) mod n_vocab.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

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

int main(int argc, char** argv) {
  std::string model, device = "cpu";
  int threads = 2, n_prefill = 512, n_decode = 128, reps = 1, parallel = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model") model = argv[i + 1];
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--prefill") n_prefill = std::atoi(argv[i + 1]);
    else if (a == "--decode") n_decode = std::atoi(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--parallel") parallel = std::atoi(argv[i + 1]);
    else if (a == "--device") device = argv[i + 1];
  }
  eng::load_options lo;
  lo.path = model;
  lo.threads = threads;
  lo.context_tokens = 1024;
  lo.max_sequences = parallel > 1 ? parallel : 1;
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
