// classifier::score, acceptance_scorer::score and task_classifier::classify allocate nothing: counted through a
// replaced global operator new (this test executable only).
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "sluice/router/acceptance.h"
#include "sluice/router/classifier.h"
#include "sluice/router/task_model.h"
#include "sluice/router/train.h"

namespace {
std::atomic<long> allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

// Under AddressSanitizer, memory from the sanitizer's own operator new (inside libstdc++) can reach the
// replaced delete above: switch off the new/free pairing check for this executable only.
extern "C" const char* __asan_default_options() { return "alloc_dealloc_mismatch=0"; }

using namespace sluice::router;

TEST_CASE("scoring a request allocates no memory") {
  {
    const long before = allocations.load();
    std::vector<int> probe(10);  // the counter sees ordinary allocations
    CHECK(allocations.load() > before);
  }
  for (uint32_t hidden : {0u, 2u}) {
    router_model m;
    m.features.hash_bits = 10;
    m.hidden_units = hidden;
    m.input_weights.assign(feature_count(m.features) * (hidden ? hidden : 1), 0.01f);
    m.hidden_bias.assign(hidden, 0.1f);
    m.output_weights.assign(hidden, 0.5f);
    result<classifier> c = classifier::from_model(std::move(m));
    REQUIRE(c.has_value());
    chat_request r = request_from_prompt(std::string(3000, 'x') + " Which of these is NOT prime?\nA. 2\nB. 4\n");
    r.messages.insert(r.messages.begin(), message{role::system, "Be brief.", {}, {}, {}, 0});
    r.max_output_tokens = 100;
    double warm = c->score(r);  // first call builds the static byte tables
    const long before = allocations.load();
    double s = 0.0;
    for (int i = 0; i < 10; ++i) s += c->score(r);
    CHECK(allocations.load() == before);
    CHECK(s == Approx(10 * warm));
  }
}

TEST_CASE("scoring a local answer for acceptance allocates no memory") {
  acceptance_model m;
  m.config.hash_bits = 10;
  m.config.word_ngram_max = 3;
  m.config.labels = {"up", "down", "neutral", "none"};
  m.weights.assign(acceptance_feature_count(m.config), 0.01f);
  result<acceptance_scorer> scorer = acceptance_scorer::from_model(std::move(m));
  REQUIRE(scorer.has_value());
  answer_signals s;
  s.query = "Determine the direction.\n\nQ: gold gains $5 as the dollar slips " + std::string(2000, 'x') + "\nA:";
  s.answer = " Neutral.";
  s.token_logprobs.assign(3000, -0.25);  // past the quantile buffer: sampled, still on the stack
  s.first_top_logprobs = {{" up", -0.4}, {" neut", -1.0}, {"Down", -1.5}, {" none", -2.0}, {" no", -3.0}};
  s.pre_score = 0.4;
  const double warm = scorer->score(s);  // first call builds the static byte tables
  const long before = allocations.load();
  double total = 0.0;
  for (int i = 0; i < 10; ++i) total += scorer->score(s);
  CHECK(allocations.load() == before);
  CHECK(total == Approx(10 * warm));
}

TEST_CASE("classifying with a task model allocates no memory") {
  task_model m;
  m.config.hash_bits = 10;
  m.config.word_ngram_max = 3;
  m.config.char_ngram_max = 5;
  m.labels = {"up", "down", "neutral", "none"};
  m.weights.resize(m.labels.size() * task_feature_count(m.config));
  for (size_t i = 0; i < m.weights.size(); ++i) m.weights[i] = static_cast<float>(i % 7) * 0.01f - 0.03f;
  m.bias = {0.1f, 0.0f, -0.1f, 0.05f};
  result<task_classifier> c = task_classifier::from_model(std::move(m));
  REQUIRE(c.has_value());
  const std::string query =
      "Determine the direction.\n\nQ: gold gains $5 as the dollar slips " + std::string(2000, 'x') + " again\nA:";
  const chat_request r = request_from_prompt(query);
  const task_classifier::answer warm = c->classify(query);  // first call builds the static byte tables
  const long before = allocations.load();
  double total = 0.0;
  for (int i = 0; i < 10; ++i) {
    total += c->classify(query).confidence;
    total += c->classify(r).confidence;
  }
  CHECK(allocations.load() == before);
  CHECK(total == Approx(20 * warm.confidence));
}
