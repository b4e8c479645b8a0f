// See access.h.
#include "access/access.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "access/redis_limits.h"
#include "http/request_reader.h"

namespace sluice::gateway {

namespace {

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether the query of `target` has a parameter that looks like a credential.
bool key_in_query(std::string_view target) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view query = target.substr(q + 1);
  static constexpr std::string_view names[] = {"api_key", "api-key", "apikey", "key", "access_token", "token"};
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    std::string_view name = param.substr(0, param.find('='));
    for (std::string_view n : names) {
      if (name.size() == n.size() && iequals_prefix(name, n)) return true;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return false;
}

}  // namespace

std::array<uint8_t, 32> sha256(std::string_view text) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string to_hex(const std::array<uint8_t, 32>& digest) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (uint8_t b : digest) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string new_api_key() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return {};
  static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = "sk-sluice-";
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += b64url[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += b64url[(acc << (6 - bits)) & 63];
  return out;
}

const char* to_string(auth_failure f) {
  switch (f) {
    case auth_failure::none: return "none";
    case auth_failure::missing: return "missing";
    case auth_failure::invalid: return "invalid";
    case auth_failure::in_url: return "in_url";
    case auth_failure::conflicting: return "conflicting";
  }
  return "invalid";
}

std::unique_ptr<access_control> access_control::create(const policies::policy& p, size_t io_threads,
                                                        std::string& error, const access_control* previous) {
  auto ac = std::unique_ptr<access_control>(new access_control());
  for (const auto& k : p.keys) ac->keys_.emplace(k.sha256, &k);
  ac->fail_open_ = p.limits_state.fail_open;
  if (p.limits_state.redis) {
    redis_options o;
    o.host = p.limits_state.redis_host;
    o.port = p.limits_state.redis_port;
    o.db = p.limits_state.redis_db;
    o.timeout = p.limits_state.timeout;
    if (!p.limits_state.redis_password_env.empty()) {
      const char* pw = std::getenv(p.limits_state.redis_password_env.c_str());
      if (!pw || !*pw) {
        error = "limits_state.password_env names " + p.limits_state.redis_password_env + ", which is not set";
        return nullptr;
      }
      o.password = pw;
    }
    ac->store_ = std::make_unique<redis_limits>(std::make_shared<redis_client>(std::move(o), io_threads),
                                                p.limits_state.key_prefix);
  } else if (previous && std::string_view(previous->store_->name()) == "memory") {
    ac->store_ = previous->store_;  // (counted by key and team name: what was spent stays spent)
  } else {
    ac->store_ = std::make_shared<memory_limits>();
  }
  return ac;
}

auth_failure access_control::authenticate(const incoming_request& req, const policies::key_config*& key) const {
  key = nullptr;
  if (key_in_query(req.target)) return auth_failure::in_url;
  if (req.authorization_fields > 1 || req.api_key_fields > 1) return auth_failure::conflicting;
  std::string_view presented;
  if (req.authorization_fields == 1) {
    std::string_view v = trim(req.authorization);
    if (!iequals_prefix(v, "bearer ")) return auth_failure::invalid;
    presented = trim(v.substr(7));
  }
  if (req.api_key_fields == 1) {
    const std::string_view v = trim(req.x_api_key);
    if (!presented.empty() && presented != v) return auth_failure::conflicting;
    presented = v;
  }
  if (presented.empty()) return auth_failure::missing;
  // Looked up by the SHA-256 of what was presented: how long the lookup takes depends on that hash, never on
  // a stored secret; the match is confirmed in constant time.
  const auto digest = sha256(presented);
  const auto it = keys_.find(digest);
  if (it == keys_.end() || CRYPTO_memcmp(it->second->sha256.data(), digest.data(), digest.size()) != 0) {
    return auth_failure::invalid;
  }
  key = it->second;
  return auth_failure::none;
}

bool access_control::allows(const policies::key_config& key, std::string_view name) {
  if (key.allow.empty()) return true;
  return std::find(key.allow.begin(), key.allow.end(), name) != key.allow.end();
}

reservation access_control::worst_case(const policies::policy& p, const policies::key_config& key,
                                       const router::chat_request& req, size_t body_bytes) const {
  reservation r;
  r.request_id = req.request_id;
  r.key = &key;
  r.team = key.team.empty() ? nullptr : p.find_team(key.team);
  const int64_t output = static_cast<int64_t>(req.max_output_tokens.value_or(static_cast<int>(key.reserve_max_tokens))) *
                         std::max(1, req.n);
  const auto input = static_cast<int64_t>(body_bytes);
  double usd = 0;
  auto add_tier = [&](const policies::model_config& m) {
    const auto& pr = m.price;
    const double in_price = std::max({pr.input_usd, pr.cached_input_usd, pr.cache_write_usd});
    usd += (static_cast<double>(input) * in_price + static_cast<double>(output) * pr.output_usd) / 1e6 + pr.request_usd;
  };
  if (const auto* route = p.find_route(req.model)) {
    for (const auto& tier : route->tiers) {
      if (const auto* m = p.find_model(tier)) add_tier(*m);
    }
  } else if (const auto* m = p.find_model(req.model)) {
    add_tier(*m);
  }
  r.cost = static_cast<nano_usd>(std::ceil(usd * static_cast<double>(policies::nanos_per_usd)));
  // Rate limits take an estimate (about four bytes per token, as OpenAI's limiter does); settle corrects it.
  r.tokens = (input + 3) / 4 + output;
  const auto now = std::chrono::system_clock::now();
  r.key_period = budget_period_id(key.budget.per, now);
  r.team_period = r.team ? budget_period_id(r.team->budget.per, now) : std::string();
  return r;
}

}  // namespace sluice::gateway
