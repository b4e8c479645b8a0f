// RouteLLM's routing metrics against small examples computed by hand.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "sluice/router/routing_metrics.h"

using namespace sluice::router;

TEST_CASE("quantiles interpolate linearly between order statistics") {
  const std::vector<double> s = {1, 2, 3, 4};
  CHECK(quantile_linear(s, 0.0) == 1.0);
  CHECK(quantile_linear(s, 0.5) == Approx(2.5));
  CHECK(quantile_linear(s, 0.1) == Approx(1.3));
  CHECK(quantile_linear(s, 1.0) == 4.0);
}

TEST_CASE("two bins, a half-right router: APGR 0.5, CPT(50%) 50%, CPT(80%) 80%") {
  // Thresholds at the 0, 0.5, 1 quantiles: 1, 2.5, 4. Routed strong: all (q 1), {3,4} (q .75), none (q .5).
  // Area = .5 (.5 + .75) / 2 + .5 (.75 + 1) / 2 = .75; APGR = (.75 - .5) / (1 - .5) = .5.
  // CPT(50%): quality .75 first reached at 50% strong. CPT(80%): .9 lies between (.5, .75) and (1, 1) -> 80%.
  const std::vector<double> scores = {1, 2, 3, 4}, weak = {1, 0, 1, 0}, strong = {1, 1, 1, 1};
  result<routing_metrics> m = evaluate_routing(scores, weak, strong, 2);
  REQUIRE(m.has_value());
  CHECK(m->weak_quality == Approx(0.5));
  CHECK(m->strong_quality == Approx(1.0));
  REQUIRE(m->curve.size() == 3);
  CHECK(m->curve[0].strong_fraction == 0.0);
  CHECK(m->curve[1].strong_fraction == Approx(0.5));
  CHECK(m->curve[1].quality == Approx(0.75));
  CHECK(m->curve[1].threshold == Approx(2.5));
  CHECK(m->apgr == Approx(0.5));
  CHECK(m->cpt50 == Approx(0.5));
  CHECK(m->cpt80 == Approx(0.8));
}

TEST_CASE("two bins, a router that ranks the one weak failure first") {
  // Strong-routed sets: all (q 1), {row0, row3} (q 1), none (q .75).
  // Area = .5 (.75 + 1) / 2 + .5 * 1 = .9375; APGR = (.9375 - .75) / .25 = .75.
  // CPT(50%): .875 between (0, .75) and (.5, 1) -> 25%.
  const std::vector<double> scores = {4, 1, 2, 3}, weak = {0, 1, 1, 1}, strong = {1, 1, 1, 1};
  result<routing_metrics> m = evaluate_routing(scores, weak, strong, 2);
  REQUIRE(m.has_value());
  CHECK(m->apgr == Approx(0.75));
  CHECK(m->cpt50 == Approx(0.25));
  CHECK(m->cpt80 == Approx(0.4));  // .95: (0 + (.95 - .75) / .25 * .5)
}

TEST_CASE("ten bins on ten rows: a perfect ordering and its reverse") {
  // Rows 0..9, score = row; weak fails on rows 8 and 9 only, strong is always right.
  std::vector<double> scores, weak, strong(10, 1.0);
  for (int i = 0; i < 10; ++i) {
    scores.push_back(i);
    weak.push_back(i >= 8 ? 0.0 : 1.0);
  }
  result<routing_metrics> good = evaluate_routing(scores, weak, strong);
  REQUIRE(good.has_value());
  REQUIRE(good->curve.size() == 11);
  // Cut k sends rows >= 0.9k strong: fractions 1, .9, ..., .1, 0; quality 1 down to .9 at 0% and .9+ at 10%.
  CHECK(good->curve.front().strong_fraction == 0.0);
  CHECK(good->curve.front().quality == Approx(0.8));
  CHECK(good->curve[1].quality == Approx(0.9));
  CHECK(good->curve[2].quality == Approx(1.0));
  // Area: .1 (.8 + .9) / 2 + .1 (.9 + 1) / 2 + .8 * 1 = .98; APGR = (.98 - .8) / .2 = .9.
  CHECK(good->apgr == Approx(0.9));
  CHECK(good->cpt50 == Approx(0.1));  // .9 reached exactly at 10%
  CHECK(good->cpt80 == Approx(0.16));  // .96: .1 + (.96 - .9) / .1 * .1

  for (double& s : scores) s = -s;
  result<routing_metrics> bad = evaluate_routing(scores, weak, strong);
  REQUIRE(bad.has_value());
  // Reversed: quality stays .8 until 80% strong, then .9 at 90%, 1 at 100%. Area = .8*.8 + .1*.85 + .1*.95 = .82.
  CHECK(bad->apgr == Approx(0.1));
  CHECK(bad->cpt50 == Approx(0.9));
}

TEST_CASE("tied scores: all-or-nothing routing recovers half the gap") {
  const std::vector<double> scores(6, 0.3), weak = {0, 0, 1, 1, 1, 0}, strong = {1, 1, 1, 1, 1, 1};
  result<routing_metrics> m = evaluate_routing(scores, weak, strong);
  REQUIRE(m.has_value());
  CHECK(m->curve.front().strong_fraction == 0.0);
  CHECK(m->curve.back().strong_fraction == 1.0);
  CHECK(m->apgr == Approx(0.5));
  CHECK(m->cpt50 == Approx(0.5));
}

TEST_CASE("no gap between the models gives NaN, bad input gives an error") {
  const std::vector<double> scores = {1, 2}, same = {1, 0};
  result<routing_metrics> m = evaluate_routing(scores, same, same);
  REQUIRE(m.has_value());
  CHECK(std::isnan(m->apgr));
  CHECK(std::isnan(m->cpt50));
  CHECK_FALSE(evaluate_routing({}, {}, {}).has_value());
  const std::vector<double> one = {1};
  CHECK_FALSE(evaluate_routing(scores, one, same).has_value());
}
