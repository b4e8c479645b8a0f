// Routing quality metrics as RouteLLM defines them (see data/README.md): a threshold sweep
// over the score's deciles, APGR (average performance gap recovered) and CPT(x%) (the share of strong-model
// calls needed to recover x% of the gap). Used by eval-router, train-router's validation and the tests.
// What must not go in here: reading data files, scoring models.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "sluice/router/error.h"

namespace sluice::router {

struct routing_point {
  double threshold = 0.0;        // requests with score >= threshold go to the strong model (last cut: >)
  double strong_fraction = 0.0;  // share of requests sent to the strong model, 0..1
  double quality = 0.0;          // mean outcome: strong_correct where routed strong, weak_correct elsewhere
};

struct routing_metrics {
  size_t rows = 0;
  double weak_quality = 0.0;    // every request on the weak model
  double strong_quality = 0.0;  // every request on the strong model
  std::vector<routing_point> curve;  // sorted by strong_fraction
  double apgr = 0.0;   // NaN when strong_quality == weak_quality
  double cpt50 = 0.0;  // strong fraction 0..1 reaching 50% of the gap; NaN when there is no gap
  double cpt80 = 0.0;
};

// Quantile of sorted values with linear interpolation between order statistics (numpy's default).
double quantile_linear(std::span<const double> sorted, double q);

// scores, weak_correct and strong_correct are parallel (one entry per request); outcomes are usually 0/1.
// n_bins + 1 thresholds at the quantiles 0, 1/n_bins, ..., 1. Error when empty or the sizes differ.
result<routing_metrics> evaluate_routing(std::span<const double> scores, std::span<const double> weak_correct,
                                         std::span<const double> strong_correct, int n_bins = 10);

// Area under quality vs strong fraction (trapezoids over the covered range), normalised by the gap.
double average_performance_gap_recovered(const std::vector<routing_point>& curve, double weak_quality,
                                         double strong_quality);
// The strong fraction at which the curve first reaches weak + x (strong - weak), interpolated linearly;
// the last point's fraction when it never does.
double call_performance_threshold(const std::vector<routing_point>& curve, double weak_quality,
                                  double strong_quality, double x);

}  // namespace sluice::router
