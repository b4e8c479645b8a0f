// Router dispatch, cost accounting and the error table.
#include <catch2/catch.hpp>

#include "sluice/router/router.h"

using namespace sluice;

namespace {

struct recording_sink : router::generation_sink {
  std::vector<router::chunk> chunks;
  std::optional<router::result<router::completion>> done;
  void on_chunk(router::chunk c) override { chunks.push_back(std::move(c)); }
  void on_done(router::result<router::completion> r) override { done = std::move(r); }
};

struct nothing : router::generation {
  void cancel() override {}
};

// Answers synchronously with fixed usage.
struct fixed_backend : router::backend {
  router::usage u;
  std::string seen_model;
  router::result<std::shared_ptr<router::generation>> start(std::shared_ptr<const router::chat_request>,
                                                            const policies::model_config& m,
                                                            std::shared_ptr<router::generation_sink> sink) override {
    seen_model = m.name;
    router::completion c;
    c.text = "ok";
    c.usage_ = u;
    sink->on_done(std::move(c));
    return std::shared_ptr<router::generation>(std::make_shared<nothing>());
  }
};

}  // namespace

TEST_CASE("cost prices uncached input, cache reads, cache writes and output apart", "[router]") {
  policies::price_per_mtok p{2.5, 1.25, 3.125, 10.0};
  router::usage u{1'000'000, 400'000, 100'000, 500'000};
  // 500k uncached * 2.5 + 400k * 1.25 + 100k * 3.125 + 500k * 10 per million
  CHECK(router::cost_usd(u, p) == Approx(1.25 + 0.5 + 0.3125 + 5.0));
  CHECK(router::cost_usd({}, p) == 0.0);
}

TEST_CASE("dispatch resolves the model, prices the answer, and rejects unknown models", "[router]") {
  auto pol = std::make_shared<policies::policy>();
  policies::model_config m;
  m.name = "m1";
  m.price = {1.0, 0.5, 1.0, 2.0};
  pol->models.push_back(m);
  auto be = std::make_shared<fixed_backend>();
  be->u = {1000, 0, 0, 500};
  auto created = router::router::create(pol, {{"m1", be}}, nullptr);
  REQUIRE(created.has_value());
  const router::router& r = **created;

  auto req = std::make_shared<router::chat_request>();
  req->model = "m1";
  auto sink = std::make_shared<recording_sink>();
  REQUIRE(r.dispatch(req, sink).has_value());
  REQUIRE(sink->done.has_value());
  REQUIRE(sink->done->has_value());
  CHECK((*sink->done)->served_by == "m1");
  CHECK((*sink->done)->cost_usd == Approx((1000 * 1.0 + 500 * 2.0) / 1e6));
  CHECK(be->seen_model == "m1");

  req->model = "nope";
  auto unknown = r.dispatch(req, std::make_shared<recording_sink>());
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().code == router::errc::unknown_model);
  CHECK(router::info(unknown.error().code).http_status == 404);
}

TEST_CASE("every error code has a status, types and a code", "[router]") {
  for (int i = 0; i <= static_cast<int>(router::errc::internal); ++i) {
    const auto& inf = router::info(static_cast<router::errc>(i));
    CHECK(inf.http_status >= 400);
    CHECK(inf.http_status < 600);
    CHECK_FALSE(inf.openai_type.empty());
    CHECK_FALSE(inf.anthropic_type.empty());
    CHECK_FALSE(inf.code.empty());
  }
  CHECK(router::info(router::errc::upstream_auth).http_status == 502);  // never a 401 relayed to our client
  CHECK(router::info(router::errc::upstream_timeout).http_status == 504);
  CHECK(router::info(router::errc::bad_request).retryable == false);
  CHECK(router::info(router::errc::upstream_error).retryable == true);
}
