// The metrics registry and the Prometheus text exposition; see metrics.h for why this is hand-written.
#include "ops/metrics.h"

#include <cassert>
#include <charconv>
#include <cmath>

namespace sluice::gateway {

static_assert(std::atomic<double>::is_always_lock_free, "metric updates must not take a lock");
static_assert(std::atomic<uint64_t>::is_always_lock_free, "metric updates must not take a lock");

void counter::inc(double amount) {
  if (!(amount >= 0.0)) return;  // negative or NaN
  value_.fetch_add(amount, std::memory_order_relaxed);
}

histogram::histogram(std::span<const double> upper_bounds)
    : upper_bounds_(upper_bounds), buckets_(new std::atomic<uint64_t>[upper_bounds.size() + 1]) {
  assert(std::is_sorted(upper_bounds.begin(), upper_bounds.end()));
  for (std::size_t i = 0; i <= upper_bounds.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void histogram::observe(double v) {
  if (std::isnan(v)) return;
  const auto bucket = std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), v) - upper_bounds_.begin();
  buckets_[static_cast<std::size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

histogram::snapshot histogram::read() const {
  snapshot s;
  s.cumulative.resize(upper_bounds_.size() + 1);
  uint64_t running = 0;
  for (std::size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> bounds;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

namespace {

bool name_char(char c, bool first, bool colon_ok) {
  const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
  return letter || (!first && c >= '0' && c <= '9');
}

bool valid_name(std::string_view name, bool colon_ok) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (!name_char(name[i], i == 0, colon_ok)) return false;
  }
  return true;
}

}  // namespace

bool valid_metric_name(std::string_view name) { return valid_name(name, true); }
bool valid_label_name(std::string_view name) { return valid_name(name, false) && name.substr(0, 2) != "__"; }

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers print as integers ("42", not "4.2e+01"), which is what readers and tests expect.
  if (v == std::trunc(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buffer[32];
  // The shortest digits that round-trip, in %g style (0.0005, 1e-05), as Prometheus' own Go clients write them.
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::general);
  return ec == std::errc{} ? std::string(buffer, end) : "NaN";
}

std::string escape_label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

family_base::family_base(std::string name, std::string help, std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {
  assert(valid_metric_name(name_));
  for ([[maybe_unused]] const std::string& l : label_names_) assert(valid_label_name(l) && l != "le");
}

void family_base::write_header(std::string& out, std::string_view type) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  out += escape_help(help_);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += type;
  out += '\n';
}

void family_base::write_series(std::string& out, std::string_view suffix, const std::vector<std::string>& values,
                               std::string_view extra_name, std::string_view extra_value) const {
  out += name_;
  out += suffix;
  if (label_names_.empty() && extra_name.empty()) return;
  out += '{';
  bool first = true;
  auto label = [&](std::string_view n, std::string_view v) {
    if (!first) out += ',';
    first = false;
    out += n;
    out += "=\"";
    out += escape_label_value(v);
    out += '"';
  };
  for (std::size_t i = 0; i < label_names_.size(); ++i) label(label_names_[i], values[i]);
  if (!extra_name.empty()) label(extra_name, extra_value);
  out += '}';
}

template <class Metric>
family<Metric>::family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds)
    : family_base(std::move(name), std::move(help), std::move(label_names)), bounds_(std::move(bounds)) {
  if (label_names_.empty()) with(std::span<const std::string_view>{});  // an unlabelled metric exists from the start
}

template <class Metric>
Metric& family<Metric>::with(std::initializer_list<std::string_view> label_values) {
  return with(std::span<const std::string_view>(label_values.begin(), label_values.size()));
}

template <class Metric>
Metric& family<Metric>::with(std::span<const std::string_view> label_values) {
  assert(label_values.size() == label_names_.size());
  if (label_values.size() != label_names_.size()) {
    std::vector<std::string_view> fixed(label_names_.size());
    for (std::size_t i = 0; i < fixed.size() && i < label_values.size(); ++i) fixed[i] = label_values[i];
    return with(std::span<const std::string_view>(fixed));
  }
  {
    std::shared_lock lock(mutex_);
    if (auto it = children_.find(label_values); it != children_.end()) return *it->second;
  }
  std::unique_lock lock(mutex_);
  if (auto it = children_.find(label_values); it != children_.end()) return *it->second;  // lost a race
  std::unique_ptr<Metric> child;
  if constexpr (std::is_same_v<Metric, histogram>) {
    child = std::make_unique<histogram>(std::span<const double>(bounds_));
  } else {
    child = std::make_unique<Metric>();
  }
  Metric& ref = *child;
  children_.emplace(std::vector<std::string>(label_values.begin(), label_values.end()), std::move(child));
  return ref;
}

template <class Metric>
void family<Metric>::write(std::string& out) const {
  std::shared_lock lock(mutex_);
  if constexpr (std::is_same_v<Metric, histogram>) {
    write_header(out, "histogram");
    std::vector<std::string> bound_text;
    for (double b : bounds_) bound_text.push_back(format_value(b));
    for (const auto& [values, h] : children_) {
      const histogram::snapshot s = h->read();
      for (std::size_t i = 0; i < bounds_.size(); ++i) {
        write_series(out, "_bucket", values, "le", bound_text[i]);
        out += ' ' + std::to_string(s.cumulative[i]) + '\n';
      }
      write_series(out, "_bucket", values, "le", "+Inf");
      out += ' ' + std::to_string(s.count) + '\n';
      write_series(out, "_sum", values);
      out += ' ' + format_value(s.sum) + '\n';
      write_series(out, "_count", values);
      out += ' ' + std::to_string(s.count) + '\n';
    }
  } else {
    write_header(out, std::is_same_v<Metric, counter> ? "counter" : "gauge");
    for (const auto& [values, m] : children_) {
      write_series(out, "", values);
      out += ' ' + format_value(m->value()) + '\n';
    }
  }
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

template <class F>
F& registry::add(std::unique_ptr<F> f) {
  std::lock_guard lock(mutex_);
  for ([[maybe_unused]] const auto& existing : families_) assert(existing->name() != f->name());
  F& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

counter_family& registry::add_counter(std::string name, std::string help, std::vector<std::string> label_names) {
  return add(std::make_unique<counter_family>(std::move(name), std::move(help), std::move(label_names)));
}

gauge_family& registry::add_gauge(std::string name, std::string help, std::vector<std::string> label_names) {
  return add(std::make_unique<gauge_family>(std::move(name), std::move(help), std::move(label_names)));
}

histogram_family& registry::add_histogram(std::string name, std::string help, std::vector<std::string> label_names,
                                          std::vector<double> upper_bounds) {
  return add(std::make_unique<histogram_family>(std::move(name), std::move(help), std::move(label_names),
                                                std::move(upper_bounds)));
}

uint64_t registry::add_collector(std::function<void()> collect) {
  std::lock_guard lock(collectors_mutex_);
  collectors_.emplace_back(next_collector_, std::move(collect));
  return next_collector_++;
}

void registry::remove_collector(uint64_t id) {
  std::lock_guard lock(collectors_mutex_);
  std::erase_if(collectors_, [&](const auto& c) { return c.first == id; });
}

std::string registry::expose() const {
  {
    std::lock_guard lock(collectors_mutex_);
    for (const auto& c : collectors_) c.second();
  }
  std::string out;
  std::lock_guard lock(mutex_);
  for (const auto& f : families_) f->write(out);
  return out;
}

}  // namespace sluice::gateway
