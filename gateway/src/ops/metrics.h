// A small Prometheus metrics registry and its text exposition (format 0.0.4). Written by hand because
// prometheus-cpp is not packaged in Debian 12 and pulling it in would add a vendored dependency for ~300 lines of
// code; the text format is simple and stable. What must not go in here: Beast/Asio (the /metrics handler serves
// registry::expose()), and the gateway's own metric names (they are declared in gateway_metrics.h).
//
// Concurrency: `family::with()` looks children up under a shared mutex (insertion takes it exclusively); the
// returned reference is stable for the registry's lifetime, so hot paths may cache it. Updates are lock-free
// relaxed atomics (doubles via std::atomic<double>, which is a CAS loop). expose() may run concurrently with
// updates; it reads each value once, and a histogram's _count is the sum of its buckets so the two always agree.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::gateway {

// A monotonically increasing value. inc() ignores negative and NaN amounts (counters never go down).
class counter {
 public:
  void inc(double amount = 1.0);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void inc(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void dec(double amount = 1.0) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets with fixed upper bounds (an observation v lands in the first bucket with
// v <= bound, or in +Inf). NaN observations are ignored.
class histogram {
 public:
  explicit histogram(std::span<const double> upper_bounds);  // sorted, finite; the family owns the storage
  void observe(double v);

  struct snapshot {
    std::vector<uint64_t> cumulative;  // (upper_bounds.size() + 1): counts with v <= bound; the last is +Inf
    double sum = 0.0;
    uint64_t count = 0;  // == cumulative.back()
  };
  snapshot read() const;
  std::span<const double> upper_bounds() const { return upper_bounds_; }

 private:
  std::span<const double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // (upper_bounds.size() + 1), not cumulative
  std::atomic<double> sum_{0.0};
};

// Bucket bounds start, start*factor, ... (count of them).
std::vector<double> exponential_buckets(double start, double factor, int count);

// True for names matching [a-zA-Z_:][a-zA-Z0-9_:]* (metric names) or [a-zA-Z_][a-zA-Z0-9_]* (label names,
// which also must not start with "__").
bool valid_metric_name(std::string_view name);
bool valid_label_name(std::string_view name);

// Shared by every family type: name, help, label names, and the exposition of its children.
class family_base {
 public:
  family_base(std::string name, std::string help, std::vector<std::string> label_names);
  virtual ~family_base() = default;
  family_base(const family_base&) = delete;
  family_base& operator=(const family_base&) = delete;

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  virtual void write(std::string& out) const = 0;  // HELP, TYPE and every sample

 protected:
  // Orders label-value tuples; transparent so a lookup needs no allocation.
  struct values_less {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                          [](std::string_view x, std::string_view y) { return x < y; });
    }
  };
  void write_header(std::string& out, std::string_view type) const;
  // `name{l1="v1",...,extra_name="extra_value"}`: extra is used for a histogram's `le`.
  void write_series(std::string& out, std::string_view suffix, const std::vector<std::string>& values,
                    std::string_view extra_name = {}, std::string_view extra_value = {}) const;

  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
};

// All children of one metric name, one per distinct tuple of label values.
template <class Metric>
class family final : public family_base {
 public:
  family(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> bounds = {});

  // The child for these label values (one per label name, in order), created on first use. Precondition: as
  // many values as label names (checked by assert; in release builds missing values are "" and extras dropped).
  Metric& with(std::initializer_list<std::string_view> label_values);
  Metric& with(std::span<const std::string_view> label_values);

  void write(std::string& out) const override;

 private:
  std::vector<double> bounds_;  // histograms only
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>, values_less> children_;
};

using counter_family = family<counter>;
using gauge_family = family<gauge>;
using histogram_family = family<histogram>;

// Owns families in registration order (the exposition keeps that order). Not copyable or movable: families and
// children are handed out by reference. Registering a name twice, or an invalid name, is a programming error
// (assert); metric names are fixed in code, never taken from input.
class registry {
 public:
  registry() = default;
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  counter_family& add_counter(std::string name, std::string help, std::vector<std::string> label_names = {});
  gauge_family& add_gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  histogram_family& add_histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                  std::vector<double> upper_bounds);

  // The whole registry in the Prometheus text format 0.0.4 (Content-Type: text/plain; version=0.0.4).
  // The collectors run first, in registration order.
  std::string expose() const;

  // A collector refreshes, at scrape time, series that mirror state owned elsewhere (a local model's KV cache).
  // remove_collector returns once no expose() runs it any more, so its owner may then be destroyed.
  uint64_t add_collector(std::function<void()> collect);
  void remove_collector(uint64_t id);

 private:
  template <class F>
  F& add(std::unique_ptr<F> f);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<family_base>> families_;
  mutable std::mutex collectors_mutex_;  // held while collectors run: removal waits for a running scrape
  std::vector<std::pair<uint64_t, std::function<void()>>> collectors_;
  uint64_t next_collector_ = 1;
};

// Text-format helpers, exposed for tests.
std::string format_value(double v);             // "3", "0.25", "1e-05", "+Inf", "-Inf", "NaN"
std::string escape_label_value(std::string_view);  // \ -> \\, " -> \", newline -> \n
std::string escape_help(std::string_view);         // \ -> \\, newline -> \n

inline constexpr std::string_view exposition_content_type = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sluice::gateway
