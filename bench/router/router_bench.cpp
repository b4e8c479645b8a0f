// Router scoring speed: features + score per request on real prompts, single thread, p50/p99 by prompt length.
// What must not go in here: training or quality metrics (eval-router does those).
// Usage: router_bench MODEL DATA.jsonl[.gz]... [--rounds N]
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "sluice/router/classifier.h"
#include "sluice/router/train.h"

namespace rt = sluice::router;
using clock_type = std::chrono::steady_clock;

namespace {

// The machine's speed right now, measured beside the scoring: FNV-1a over the same bytes (one multiply per byte,
// a dependency chain). Shared two-core machines swing 3x with load; the ratio to this loop does not.
uint64_t reference_hash(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

struct bucket {
  const char* name;
  size_t lo, hi;  // prompt characters in [lo, hi)
  std::vector<double> ns;
  std::vector<double> ref_ns;
  size_t prompts = 0;
  double chars = 0;
};

double percentile(std::vector<double>& v, double q) {
  if (v.empty()) return 0.0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: router_bench MODEL DATA.jsonl[.gz]... [--rounds N]\n");
    return 2;
  }
  int rounds = 5;
  std::vector<std::string> files;
  for (int i = 2; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else files.push_back(argv[i]);
  }
  rt::result<rt::classifier> clf = rt::classifier::load(argv[1]);
  if (!clf) {
    std::fprintf(stderr, "router_bench: %s\n", clf.error().message.c_str());
    return 2;
  }
  std::vector<rt::chat_request> requests;
  for (const std::string& f : files) {
    rt::result<std::string> text = rt::read_file_maybe_gzip(f);
    if (!text) {
      std::fprintf(stderr, "router_bench: %s\n", text.error().message.c_str());
      return 2;
    }
    std::string_view rest = *text;
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      const std::string_view line = rest.substr(0, nl);
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
      boost::system::error_code ec;
      boost::json::value v = boost::json::parse(line, ec);
      if (ec || !v.is_object()) continue;
      if (const boost::json::value* p = v.get_object().if_contains("prompt"); p && p->is_string())
        requests.push_back(rt::request_from_prompt(std::string(p->get_string())));
    }
  }
  if (requests.empty()) {
    std::fprintf(stderr, "router_bench: no prompts\n");
    return 2;
  }
  // Longer requests, to show the cost grows linearly: real prompts glued together up to 4k, 8k, 16k, 32k chars.
  for (size_t target : {4000u, 8000u, 16000u, 32000u}) {
    for (int k = 0; k < 50; ++k) {
      std::string p;
      for (size_t i = static_cast<size_t>(k) * 97; p.size() < target; i += 13)
        p += requests[i % requests.size()].messages[0].content + "\n";
      requests.push_back(rt::request_from_prompt(p));
    }
  }

  std::vector<bucket> buckets = {{"< 250", 0, 250, {}},          {"250-500", 250, 500, {}},
                                 {"500-1000", 500, 1000, {}},    {"1000-2000", 1000, 2000, {}},
                                 {"2000-4000", 2000, 4000, {}},  {"4000-8000", 4000, 8000, {}},
                                 {"8000-16000", 8000, 16000, {}}, {"16000+", 16000, SIZE_MAX, {}}};
  auto bucket_of = [&](size_t chars) -> bucket& {
    for (bucket& b : buckets)
      if (chars >= b.lo && chars < b.hi) return b;
    return buckets.back();
  };
  for (const auto& r : requests) {
    bucket& b = bucket_of(r.messages[0].content.size());
    ++b.prompts;
    b.chars += static_cast<double>(r.messages[0].content.size());
  }

  volatile double sink = 0.0;
  for (const auto& r : requests) sink = sink + clf->score(r);  // warm-up: weights into cache, branch predictors
  for (int round = 0; round < rounds; ++round) {
    for (const auto& r : requests) {
      const auto t0 = clock_type::now();
      const double s = clf->score(r);
      const auto t1 = clock_type::now();
      const uint64_t h = reference_hash(r.messages[0].content);
      const auto t2 = clock_type::now();
      sink = sink + s + static_cast<double>(h & 1);
      bucket& b = bucket_of(r.messages[0].content.size());
      b.ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
      b.ref_ns.push_back(std::chrono::duration<double, std::nano>(t2 - t1).count());
    }
  }

  const rt::router_model& m = clf->model();
  std::printf("router scoring: %zu prompts x %d rounds, single thread; model: %u hidden units, 2^%u hashed slots, "
              "word n-grams 1..%u, char n-grams %u..%u\n",
              requests.size(), rounds, m.hidden_units, m.features.hash_bits, m.features.word_ngram_max,
              m.features.char_ngram_min, m.features.char_ngram_max);
  std::printf("%-12s %8s %10s %10s %10s %12s %14s\n", "chars", "prompts", "mean chars", "p50 us", "p99 us",
              "p50 ns/char", "p50 / ref loop");
  bool target_met = true;
  for (bucket& b : buckets) {
    if (b.ns.empty()) continue;
    const double p50 = percentile(b.ns, 0.50), p99 = percentile(b.ns, 0.99);
    const double mean_chars = b.chars / static_cast<double>(b.prompts);
    const double ref50 = percentile(b.ref_ns, 0.50);
    std::printf("%-12s %8zu %10.0f %10.2f %10.2f %12.2f %14.2f\n", b.name, b.prompts, mean_chars, p50 / 1000,
                p99 / 1000, p50 / mean_chars, p50 / ref50);
    if (b.hi <= 2000 && p99 >= 10000) target_met = false;
  }
  std::vector<double> all_ref;
  for (bucket& b : buckets) all_ref.insert(all_ref.end(), b.ref_ns.begin(), b.ref_ns.end());
  double ref_chars = 0;
  for (const auto& r : requests) ref_chars += static_cast<double>(r.messages[0].content.size());
  std::printf("reference loop (FNV-1a, 1 multiply per byte) this run: %.2f ns/byte on average\n",
              [&] {
                double t = 0;
                for (double x : all_ref) t += x;
                return t / (ref_chars * rounds);
              }());
  std::printf("target p99 < 10 us below 2,000 chars: %s\n", target_met ? "met" : "MISSED");
  return 0;
}
