// `sluice generate`: load a GGUF model in process and stream a completion to stdout, with prefill and
// decode speed on stderr. A thin shell over the engine's public API; no HTTP, no router.
// What must not go in here: anything beyond engine.h and the standard library (no Beast: this file
// must stay cheap to compile and usable without the server).
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "cli/cli.h"
#include "sluice/engine/engine.h"

namespace sluice::gateway {
namespace {

namespace eng = sluice::engine;

constexpr const char* usage =
    "usage: sluice generate --model FILE --prompt TEXT [--chat] [--system TEXT] [--max-tokens N]\n"
    "                       [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S]\n"
    "                       [--threads N] [--context N] [--stop STR]... [--device cpu|cuda|auto]\n";

template <class T>
bool parse_number(std::string_view s, T& out) {
  const char* b = s.data();
  const char* e = s.data() + s.size();
  auto r = std::from_chars(b, e, out);
  return r.ec == std::errc() && r.ptr == e;
}

class printer final : public eng::sequence_observer {
 public:
  void on_token(const eng::token_event& ev) override {
    std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
    std::fflush(stdout);
  }
  void on_finish(const eng::finish_info& info) override {
    std::lock_guard lk(mu_);
    info_ = info;
    done_ = true;
    cv_.notify_all();
  }
  eng::finish_info wait() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return done_; });
    return info_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  eng::finish_info info_;
};

const char* reason_name(eng::finish_reason r) {
  switch (r) {
    case eng::finish_reason::stop: return "stop";
    case eng::finish_reason::length: return "length";
    case eng::finish_reason::cancelled: return "cancelled";
    case eng::finish_reason::error: return "error";
  }
  return "?";
}

}  // namespace

int run_generate(int argc, char** argv) {
  std::string model, prompt, system;
  bool chat = false, have_prompt = false;
  eng::sampling_params sp;
  sp.max_tokens = 128;
  int threads = 0, context = 2048;
  std::string device = "cpu";
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "sluice generate: %s\n%s", msg.c_str(), usage);
    return 2;
  };
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (a == "--chat") {
      chat = true;
      continue;
    }
    if (i + 1 >= argc) return fail("missing value after " + std::string(a));
    std::string_view v = argv[++i];
    bool ok = true;
    if (a == "--model") model = v;
    else if (a == "--prompt") { prompt = v; have_prompt = true; }
    else if (a == "--system") system = v;
    else if (a == "--max-tokens") ok = parse_number(v, sp.max_tokens) && sp.max_tokens > 0;
    else if (a == "--temperature") ok = parse_number(v, sp.temperature) && sp.temperature >= 0.0f;
    else if (a == "--top-k") ok = parse_number(v, sp.top_k) && sp.top_k >= 0;
    else if (a == "--top-p") ok = parse_number(v, sp.top_p) && sp.top_p > 0.0f && sp.top_p <= 1.0f;
    else if (a == "--min-p") ok = parse_number(v, sp.min_p) && sp.min_p >= 0.0f && sp.min_p <= 1.0f;
    else if (a == "--seed") { uint64_t s = 0; ok = parse_number(v, s); sp.seed = s; }
    else if (a == "--threads") ok = parse_number(v, threads) && threads >= 1 && threads <= 256;
    else if (a == "--context") ok = parse_number(v, context) && context >= 1;
    else if (a == "--stop") { ok = !v.empty(); sp.stop.emplace_back(v); }
    else if (a == "--device") { ok = v == "cpu" || v == "cuda" || v == "auto"; device = v; }
    else return fail("unknown flag '" + std::string(a) + "'");
    if (!ok) return fail("bad value '" + std::string(v) + "' for " + std::string(a));
  }
  if (model.empty()) return fail("--model is required");
  if (!have_prompt) return fail("--prompt is required");
  if (!system.empty() && !chat) return fail("--system needs --chat");

  eng::load_options lo;
  lo.path = model;
  lo.threads = threads;
  lo.context_tokens = context;
  lo.max_sequences = 1;
  lo.device = device;
  auto e = eng::engine::load(lo);
  if (!e) {
    std::fprintf(stderr, "sluice generate: cannot load model: %s\n", e.error().message.c_str());
    return 1;
  }
  eng::engine& en = **e;
  if (!en.info().device_note.empty()) std::fprintf(stderr, "sluice generate: %s\n", en.info().device_note.c_str());
  std::vector<eng::token_id> tokens;
  if (chat) {
    std::vector<eng::chat_message> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", prompt});
    auto text = en.apply_chat_template(msgs, true);
    if (!text) {
      std::fprintf(stderr, "sluice generate: %s\n", text.error().message.c_str());
      return 1;
    }
    tokens = en.tokenize(*text, false, true);
  } else {
    tokens = en.tokenize(prompt, en.info().add_bos, false);
  }
  if (tokens.empty()) return fail("the prompt is empty");
  auto obs = std::make_shared<printer>();
  auto id = en.submit(std::move(tokens), sp, obs);
  if (!id) {
    std::fprintf(stderr, "sluice generate: %s\n", id.error().message.c_str());
    return 1;
  }
  eng::finish_info info = obs->wait();
  std::fputs("\n", stdout);
  std::fflush(stdout);
  if (info.reason == eng::finish_reason::error) {
    std::fprintf(stderr, "sluice generate: %s\n", info.message.c_str());
    return 1;
  }
  double prefill_tps = info.prefill_ms > 0 ? info.tokens_prompt * 1000.0 / info.prefill_ms : 0.0;
  double decode_tps = info.decode_ms > 0 && info.tokens_generated > 1
                          ? (info.tokens_generated - 1) * 1000.0 / info.decode_ms : 0.0;
  std::fprintf(stderr, "[%s] prompt %d tokens, prefill %.1f tok/s | generated %d tokens, decode %.1f tok/s | finish: %s\n",
               en.info().name.c_str(), info.tokens_prompt, prefill_tps, info.tokens_generated, decode_tps,
               reason_name(info.reason));
  return 0;
}

}  // namespace sluice::gateway
