// RouteLLM's routing metrics, computed the way their evaluation does (pandas qcut bin edges, >= on every cut
// but the last, trapezoid area, linear interpolation for CPT). What must not go in here: I/O, models.
#include "sluice/router/routing_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sluice::router {

double quantile_linear(std::span<const double> sorted, double q) {
  if (sorted.empty()) return std::numeric_limits<double>::quiet_NaN();
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

double average_performance_gap_recovered(const std::vector<routing_point>& curve, double weak_quality,
                                         double strong_quality) {
  const double gap = strong_quality - weak_quality;
  if (curve.size() < 2 || gap == 0.0) return std::numeric_limits<double>::quiet_NaN();
  double area = 0.0;
  for (size_t i = 1; i < curve.size(); ++i)
    area += (curve[i].strong_fraction - curve[i - 1].strong_fraction) * (curve[i].quality + curve[i - 1].quality) / 2;
  const double range = curve.back().strong_fraction - curve.front().strong_fraction;
  if (range == 0.0) return std::numeric_limits<double>::quiet_NaN();
  return (area - weak_quality * range) / (gap * range);
}

double call_performance_threshold(const std::vector<routing_point>& curve, double weak_quality,
                                  double strong_quality, double x) {
  if (curve.empty() || strong_quality == weak_quality) return std::numeric_limits<double>::quiet_NaN();
  const double target = weak_quality + x * (strong_quality - weak_quality);
  if (curve.front().quality >= target) return curve.front().strong_fraction;
  for (size_t i = 1; i < curve.size(); ++i) {
    if (curve[i].quality >= target) {
      const routing_point& a = curve[i - 1];
      const routing_point& b = curve[i];
      return a.strong_fraction + (target - a.quality) / (b.quality - a.quality) * (b.strong_fraction - a.strong_fraction);
    }
  }
  return curve.back().strong_fraction;
}

result<routing_metrics> evaluate_routing(std::span<const double> scores, std::span<const double> weak_correct,
                                         std::span<const double> strong_correct, int n_bins) {
  if (scores.empty()) return error{errc::bad_request, "no rows to evaluate", {}};
  if (weak_correct.size() != scores.size() || strong_correct.size() != scores.size())
    return error{errc::bad_request, "scores and outcomes differ in length", {}};
  if (n_bins < 1) return error{errc::bad_request, "n_bins must be at least 1", {}};
  const size_t n = scores.size();
  routing_metrics m;
  m.rows = n;
  for (size_t i = 0; i < n; ++i) {
    m.weak_quality += weak_correct[i];
    m.strong_quality += strong_correct[i];
  }
  m.weak_quality /= static_cast<double>(n);
  m.strong_quality /= static_cast<double>(n);

  std::vector<double> sorted(scores.begin(), scores.end());
  std::sort(sorted.begin(), sorted.end());
  for (int k = 0; k <= n_bins; ++k) {
    const double t = quantile_linear(sorted, static_cast<double>(k) / n_bins);
    const bool last = k == n_bins;
    size_t n_strong = 0;
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
      const bool strong = last ? scores[i] > t : scores[i] >= t;
      n_strong += strong;
      total += strong ? strong_correct[i] : weak_correct[i];
    }
    m.curve.push_back({t, static_cast<double>(n_strong) / n, total / n});
  }
  std::stable_sort(m.curve.begin(), m.curve.end(),
                   [](const routing_point& a, const routing_point& b) { return a.strong_fraction < b.strong_fraction; });
  m.apgr = average_performance_gap_recovered(m.curve, m.weak_quality, m.strong_quality);
  m.cpt50 = call_performance_threshold(m.curve, m.weak_quality, m.strong_quality, 0.5);
  m.cpt80 = call_performance_threshold(m.curve, m.weak_quality, m.strong_quality, 0.8);
  return m;
}

}  // namespace sluice::router
