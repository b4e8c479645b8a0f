// See access_loader.h.
#include "access_loader.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "value_syntax.h"

namespace sluice::policies::detail {
namespace {

constexpr std::string_view key_keys[] = {"sha256", "team", "allow", "budget", "requests_per_minute",
                                         "tokens_per_minute", "reserve_max_tokens", "admin"};
constexpr std::string_view team_keys[] = {"budget"};
constexpr std::string_view budget_keys[] = {"usd", "per"};
constexpr std::string_view state_keys[] = {"redis", "password_env", "timeout_ms", "on_error", "key_prefix"};
constexpr std::string_view file_keys[] = {"keys", "teams"};

std::string in_quotes(std::string_view s) { return "'" + std::string(s) + "'"; }

bool is_label_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  });
}

std::optional<std::array<uint8_t, 32>> parse_sha256(std::string_view hex) {
  if (hex.starts_with("sha256:")) hex.remove_prefix(7);
  if (hex.size() != 64) return std::nullopt;
  std::array<uint8_t, 32> out{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return out;
}

void load_budget(error_sink& sink, const field& section, const std::string& where, budget_config& out) {
  bool saw_usd = false;
  for (const field& f : read_map(sink, section.value, section.key_mark, "budget of " + where, budget_keys,
                                 budget_keys)) {
    if (f.key == "usd") {
      saw_usd = true;
      if (auto v = read_number(sink, f, 0.0, 1e6)) {
        if (*v <= 0) sink.add(f.value_mark(), "'usd' must be more than 0 (leave 'budget' out for no budget)");
        else out.limit = static_cast<nano_usd>(std::llround(*v * static_cast<double>(nanos_per_usd)));
      }
    } else if (f.key == "per") {
      auto s = read_string(sink, f);
      if (!s) continue;
      if (*s == "day") out.per = budget_period::day;
      else if (*s == "month") out.per = budget_period::month;
      else if (*s == "total") out.per = budget_period::total;
      else sink.add(f.value_mark(), "'per' must be day, month or total (calendar periods in UTC), got " + in_quotes(*s));
    }
  }
  if (section.value.IsMap() && !saw_usd) sink.add(section.key_mark, "budget of " + where + " needs 'usd'");
}

// A map of name -> entry; every name checked as a label (it appears in metrics).
std::vector<field> named_entries(error_sink& sink, const field& section, std::string_view what) {
  if (!section.value.IsMap()) {
    read_map(sink, section.value, section.key_mark, what, {}, {});  // reports the type
    return {};
  }
  std::vector<std::string> names;
  for (auto it = section.value.begin(); it != section.value.end(); ++it) {
    if (it->first.IsScalar()) names.push_back(it->first.Scalar());
  }
  std::vector<std::string_view> views(names.begin(), names.end());
  auto entries = read_map(sink, section.value, section.key_mark, what, views, {});
  for (const field& e : entries) {
    if (!is_label_name(e.key)) {
      sink.add(e.key_mark, "invalid name " + in_quotes(e.key) + " in " + std::string(what) +
                               ": use letters, digits and - _ . (at most 64 characters)");
    }
  }
  return entries;
}

}  // namespace

void load_keys(error_sink& sink, const field& section, std::vector<key_config>& out) {
  for (const field& entry : named_entries(sink, section, "keys")) {
    key_config k;
    k.name = entry.key;
    k.line = entry.key_mark.line + 1;
    k.column = entry.key_mark.column + 1;
    const std::string where = "key " + in_quotes(k.name);
    bool saw_hash = false;
    for (const field& f : read_map(sink, entry.value, entry.key_mark, where, key_keys, key_keys)) {
      if (f.key == "sha256") {
        saw_hash = true;
        auto s = read_string(sink, f);
        if (!s) continue;
        if (auto h = parse_sha256(*s)) k.sha256 = *h;
        else sink.add(f.value_mark(), "'sha256' must be 64 hex digits: the SHA-256 of the key (sluice keys create "
                                      "prints it); the key itself never goes in the policy");
      } else if (f.key == "team") {
        if (auto s = read_string(sink, f)) k.team = *s;
      } else if (f.key == "allow") {
        if (auto v = read_string_list(sink, f)) {
          if (v->empty()) sink.add(f.value_mark(), "'allow' lists no route or model; leave it out to allow all");
          k.allow = std::move(*v);
        }
      } else if (f.key == "budget") {
        load_budget(sink, f, where, k.budget);
      } else if (f.key == "requests_per_minute") {
        if (auto v = read_int(sink, f, 1, int64_t(1) << 40)) k.requests_per_minute = *v;
      } else if (f.key == "tokens_per_minute") {
        if (auto v = read_int(sink, f, 1, int64_t(1) << 50)) k.tokens_per_minute = *v;
      } else if (f.key == "reserve_max_tokens") {
        if (auto v = read_int(sink, f, 1, 1 << 24)) k.reserve_max_tokens = *v;
      } else if (f.key == "admin") {
        if (auto v = read_bool(sink, f)) k.admin = *v;
      }
    }
    if (entry.value.IsMap() && !saw_hash) sink.add(entry.key_mark, where + " needs 'sha256' (sluice keys create)");
    out.push_back(std::move(k));
  }
}

void load_teams(error_sink& sink, const field& section, std::vector<team_config>& out) {
  for (const field& entry : named_entries(sink, section, "teams")) {
    team_config t;
    t.name = entry.key;
    t.line = entry.key_mark.line + 1;
    const std::string where = "team " + in_quotes(t.name);
    for (const field& f : read_map(sink, entry.value, entry.key_mark, where, team_keys, team_keys)) {
      if (f.key == "budget") load_budget(sink, f, where, t.budget);
    }
    out.push_back(std::move(t));
  }
}

void load_limits_state(error_sink& sink, const field& section, limits_state_config& out) {
  bool saw_redis = false;
  for (const field& f : read_map(sink, section.value, section.key_mark, "limits_state", state_keys, state_keys)) {
    if (f.key == "redis") {
      saw_redis = true;
      auto s = read_string(sink, f);
      if (!s) continue;
      std::string_view url = *s;
      const std::string usage = "'redis' must be redis://host[:port][/db] (a password goes in password_env)";
      if (!url.starts_with("redis://")) {
        sink.add(f.value_mark(), usage);
        continue;
      }
      url.remove_prefix(8);
      if (url.find('@') != std::string_view::npos) {
        sink.add(f.value_mark(), "'redis' must not hold a password; name the variable holding it in password_env");
        continue;
      }
      std::string_view db;
      if (auto slash = url.find('/'); slash != std::string_view::npos) {
        db = url.substr(slash + 1);
        url = url.substr(0, slash);
      }
      std::string why;
      auto ep = parse_base_url("http://" + std::string(url), why);
      if (!ep || ep->host.empty()) {
        sink.add(f.value_mark(), usage + (why.empty() ? "" : ": " + why));
        continue;
      }
      out.redis = true;
      out.redis_host = ep->host;
      const size_t colon = url.rfind(':');
      const bool explicit_port = colon != std::string_view::npos && (url.front() != '[' || colon > url.find(']'));
      out.redis_port = explicit_port ? ep->port : 6379;
      out.redis_db = 0;
      if (!db.empty()) {
        if (db.size() > 4 || db.find_first_not_of("0123456789") != std::string_view::npos) {
          sink.add(f.value_mark(), usage + ": the database is a number");
          continue;
        }
        out.redis_db = std::stoi(std::string(db));
      }
    } else if (f.key == "password_env") {
      auto s = read_string(sink, f);
      if (s && !is_env_var_name(*s)) sink.add(f.value_mark(), "'password_env' must name an environment variable");
      else if (s) out.redis_password_env = *s;
    } else if (f.key == "timeout_ms") {
      if (auto v = read_int(sink, f, 1, 60'000)) out.timeout = std::chrono::milliseconds(*v);
    } else if (f.key == "on_error") {
      auto s = read_string(sink, f);
      if (!s) continue;
      if (*s == "fail_closed") out.fail_open = false;
      else if (*s == "fail_open") out.fail_open = true;
      else sink.add(f.value_mark(), "'on_error' must be fail_closed (refuse with 503) or fail_open (serve without "
                                    "counting), got " + in_quotes(*s));
    } else if (f.key == "key_prefix") {
      auto s = read_string(sink, f);
      if (s && (s->empty() || s->size() > 64 || s->find_first_of(" \r\n\t{}") != std::string::npos)) {
        sink.add(f.value_mark(), "'key_prefix' must be 1 to 64 characters without spaces or braces");
      } else if (s) {
        out.key_prefix = *s;
      }
    }
  }
  if (section.value.IsMap() && !saw_redis) sink.add(section.key_mark, "limits_state needs 'redis' (redis://host:port/db)");
}

void load_keys_file(error_sink& sink, const field& f, const std::filesystem::path& base_dir, policy& p) {
  auto s = read_string(sink, f);
  if (!s) return;
  const std::string path = resolve_path(*s, base_dir);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    sink.add(f.value_mark(), "cannot read keys_file " + in_quotes(path));
    return;
  }
  std::ostringstream text;
  text << in.rdbuf();
  p.keys_file = path;
  error_sink file_sink(path);
  try {
    const YAML::Node root = YAML::Load(text.str());
    if (!root.IsNull() && root.IsDefined()) {
      for (const field& section : read_map(file_sink, root, root.Mark(), "the keys file (top level)", file_keys,
                                           file_keys)) {
        if (section.key == "keys") load_keys(file_sink, section, p.keys);
        if (section.key == "teams") load_teams(file_sink, section, p.teams);
      }
    }
  } catch (const YAML::Exception& e) {
    file_sink.add(e.mark, "invalid YAML: " + e.msg);
  }
  for (auto& e : file_sink.errors()) sink.errors().push_back(std::move(e));
}

void check_access(error_sink& sink, const YAML::Node& root, policy& p) {
  // Errors about one key point at it in the file it came from.
  auto at_key = [&](const key_config& k, std::string message) {
    load_error e;
    e.file = p.keys_file.empty() ? sink.file() : p.keys_file;
    e.line = k.line;
    e.column = k.column;
    e.message = std::move(message);
    sink.errors().push_back(std::move(e));
  };
  for (size_t i = 0; i < p.keys.size(); ++i) {
    const key_config& k = p.keys[i];
    const std::string where = "key " + in_quotes(k.name);
    if (!k.team.empty() && !p.find_team(k.team)) at_key(k, where + " names team " + in_quotes(k.team) + ", which is not defined in 'teams'");
    for (const std::string& name : k.allow) {
      if (!p.find_route(name) && !p.find_model(name)) {
        at_key(k, where + " allows " + in_quotes(name) + ", which is neither a route nor a model of the policy");
      }
    }
    for (size_t j = 0; j < i; ++j) {
      if (p.keys[j].sha256 == k.sha256 && k.sha256 != std::array<uint8_t, 32>{}) {
        at_key(k, where + " has the same sha256 as key " + in_quotes(p.keys[j].name) + "; every key needs its own secret");
      }
    }
  }
  if (p.limits_state.redis && p.keys.empty()) {
    sink.add(root["limits_state"].Mark(), "limits_state is set but the policy has no keys; budgets and rate limits "
                                          "belong to keys");
  }
}

}  // namespace sluice::policies::detail
