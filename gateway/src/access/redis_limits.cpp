// See redis_limits.h. The two scripts implement memory_limits::reserve_at and settle_at (limits.cpp); a change
// to one is a change to both (test_keys.py runs the same tests against each store).
#include "access/redis_limits.h"
#include "ops/log.h"

#include <openssl/evp.h>

#include <chrono>
#include <cstdio>

namespace sluice::gateway {

namespace {

// KEYS: key budget, team budget, requests bucket, tokens bucket, reservation.
// ARGV: cost, key limit, team limit (0 = none), requests/min, tokens/min (0 = none), tokens, key budget TTL s,
// team budget TTL s (0 = none), ms until the key's period ends, ms until the team's ends.
// Returns {outcome, retry_after_ms, requests_remaining, requests_reset_ms, tokens_remaining, tokens_reset_ms,
// budget_remaining}; outcome 0 admitted, 1 key budget, 2 team budget, 3 requests, 4 tokens, 5 too large,
// 6 the id is already reserved.
constexpr std::string_view reserve_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cost = tonumber(ARGV[1])
local klim, tlim = tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm, tpm, toks = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function level(key, cap)
  if cap <= 0 then return 0 end
  local v = redis.call('HMGET', key, 'l', 't')
  local l, at = tonumber(v[1]), tonumber(v[2])
  if l == nil or at == nil then return cap end
  return math.min(cap, l + math.max(0, now - at) * cap / 60000)
end
local function wait(missing, cap) return math.ceil(missing * 60000 / cap) end
local rl, tl = level(KEYS[3], rpm), level(KEYS[4], tpm)
local ks, ts = 0, 0
if klim > 0 then ks = tonumber(redis.call('GET', KEYS[1]) or '0') end
if tlim > 0 then ts = tonumber(redis.call('GET', KEYS[2]) or '0') end
local code, retry = 0, 0
if klim > 0 and ks + cost > klim then code, retry = 1, tonumber(ARGV[9])
elseif tlim > 0 and ts + cost > tlim then code, retry = 2, tonumber(ARGV[10])
elseif rpm > 0 and rl < 1 then code, retry = 3, wait(1 - rl, rpm)
elseif tpm > 0 and toks > tpm then code = 5
elseif tpm > 0 and tl < toks then code, retry = 4, wait(toks - tl, tpm)
elseif redis.call('EXISTS', KEYS[5]) == 1 then code = 6
end
if code == 0 then
  if klim > 0 then
    ks = redis.call('INCRBY', KEYS[1], ARGV[1])
    if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[7]) end
  end
  if tlim > 0 then
    redis.call('INCRBY', KEYS[2], ARGV[1])
    if tonumber(ARGV[8]) > 0 then redis.call('EXPIRE', KEYS[2], ARGV[8]) end
  end
  if rpm > 0 then
    rl = rl - 1
    redis.call('HSET', KEYS[3], 'l', tostring(rl), 't', string.format('%d', now))
    redis.call('PEXPIRE', KEYS[3], 120000)
  end
  if tpm > 0 then
    tl = tl - toks
    redis.call('HSET', KEYS[4], 'l', tostring(tl), 't', string.format('%d', now))
    redis.call('PEXPIRE', KEYS[4], 120000)
  end
  redis.call('HSET', KEYS[5], 'c', ARGV[1], 'k', ARGV[6])
  redis.call('EXPIRE', KEYS[5], 86400)
end
local rrem, rreset, trem, treset, brem = 0, 0, 0, 0, 0
if rpm > 0 then rrem = math.floor(math.max(0, rl)); rreset = wait(rpm - rl, rpm) end
if tpm > 0 then trem = math.floor(math.max(0, tl)); treset = wait(tpm - tl, tpm) end
if klim > 0 then brem = math.max(0, klim - ks) end
return {code, retry, rrem, rreset, trem, treset, brem}
)lua";

// KEYS: key budget, team budget, tokens bucket, reservation. ARGV: cost, tokens, tokens/min (0 = none), key
// has a budget (1/0), team has a budget (1/0). Returns 1 when settled, 0 when there was nothing to settle.
constexpr std::string_view settle_script = R"lua(
local v = redis.call('HMGET', KEYS[4], 'c', 'k')
if not v[1] then return 0 end
redis.call('DEL', KEYS[4])
local dc = tonumber(ARGV[1]) - tonumber(v[1])
if dc ~= 0 then
  local d = string.format('%d', dc)
  if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], d) end
  if ARGV[5] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then redis.call('INCRBY', KEYS[2], d) end
end
local tpm = tonumber(ARGV[3])
local dt = tonumber(v[2]) - tonumber(ARGV[2])
if tpm > 0 and dt ~= 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local b = redis.call('HMGET', KEYS[3], 'l', 't')
  local l, at = tonumber(b[1]), tonumber(b[2])
  if l == nil or at == nil then l, at = tpm, now end
  l = math.min(tpm, math.min(tpm, l + math.max(0, now - at) * tpm / 60000) + dt)
  redis.call('HSET', KEYS[3], 'l', tostring(l), 't', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[3], 120000)
end
return 1
)lua";

std::string sha1_hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha1(), nullptr);
  static const char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

int64_t element(const resp::value& v, size_t i) {
  return i < v.elements.size() && v.elements[i].type == resp::value::kind::integer ? v.elements[i].integer : 0;
}

}  // namespace

redis_limits::redis_limits(std::shared_ptr<redis_client> client, std::string key_prefix)
    : client_(std::move(client)),
      prefix_(std::move(key_prefix)),
      reserve_sha1_(sha1_hex(reserve_script)),
      settle_sha1_(sha1_hex(settle_script)) {}

task<redis_reply> redis_limits::run_script(std::string_view script, const std::string& sha1,
                                           std::vector<std::string> keys, std::vector<std::string> args) {
  const std::string nkeys = std::to_string(keys.size());
  std::vector<std::string_view> parts{"EVALSHA", sha1, nkeys};
  for (const auto& k : keys) parts.push_back(k);
  for (const auto& a : args) parts.push_back(a);
  std::string command;
  resp::append_command(command, parts);
  redis_reply r = co_await client_->call(std::move(command));
  if (r.ok && r.value.type == resp::value::kind::error && r.value.text.starts_with("NOSCRIPT")) {
    parts[0] = "EVAL";
    parts[1] = script;
    std::string eval;
    resp::append_command(eval, parts);
    r = co_await client_->call(std::move(eval));
  }
  co_return r;
}

task<admission> redis_limits::reserve(const reservation& r) {
  const policies::key_config& k = *r.key;
  const bool team_budget = r.team && r.team->budget.set();
  const auto now = std::chrono::system_clock::now();
  const int64_t key_left = k.budget.set() ? seconds_until_period_end(k.budget.per, now) : 0;
  const int64_t team_left = team_budget ? seconds_until_period_end(r.team->budget.per, now) : 0;
  std::vector<std::string> keys{prefix_ + "budget:key:" + k.name + ":" + r.key_period,
                                prefix_ + "budget:team:" + (r.team ? r.team->name : std::string()) + ":" + r.team_period,
                                prefix_ + "rate:req:" + k.name, prefix_ + "rate:tok:" + k.name,
                                prefix_ + "res:" + r.request_id};
  std::vector<std::string> args{std::to_string(r.cost),
                                std::to_string(k.budget.limit),
                                std::to_string(team_budget ? r.team->budget.limit : 0),
                                std::to_string(k.requests_per_minute),
                                std::to_string(k.tokens_per_minute),
                                std::to_string(r.tokens),
                                std::to_string(key_left > 0 ? key_left + 2 * 86400 : 0),
                                std::to_string(team_left > 0 ? team_left + 2 * 86400 : 0),
                                std::to_string(key_left * 1000),
                                std::to_string(team_left * 1000)};
  const redis_reply reply = co_await run_script(reserve_script, reserve_sha1_, std::move(keys), std::move(args));
  admission a;
  if (!reply.ok || reply.value.type != resp::value::kind::array || reply.value.elements.size() != 7) {
    a.outcome = admission_outcome::unavailable;
    a.error = !reply.ok ? reply.error
                        : reply.value.type == resp::value::kind::error ? "redis: " + reply.value.text
                                                                       : "redis: unexpected reply to the reserve script";
    co_return a;
  }
  static constexpr admission_outcome outcomes[] = {
      admission_outcome::admitted,      admission_outcome::key_budget,  admission_outcome::team_budget,
      admission_outcome::requests_rate, admission_outcome::tokens_rate, admission_outcome::tokens_too_large};
  const int64_t code = element(reply.value, 0);
  if (code < 0 || code > 5) {
    a.outcome = admission_outcome::unavailable;
    a.error = "request id reserved twice";
    co_return a;
  }
  a.outcome = outcomes[code];
  a.retry_after_ms = element(reply.value, 1);
  a.requests_remaining = element(reply.value, 2);
  a.requests_reset_ms = element(reply.value, 3);
  a.tokens_remaining = element(reply.value, 4);
  a.tokens_reset_ms = element(reply.value, 5);
  a.budget_remaining = element(reply.value, 6);
  co_return a;
}

task<void> redis_limits::settle(const reservation& r, nano_usd cost, int64_t tokens) {
  const policies::key_config& k = *r.key;
  const bool team_budget = r.team && r.team->budget.set();
  std::vector<std::string> keys{prefix_ + "budget:key:" + k.name + ":" + r.key_period,
                                prefix_ + "budget:team:" + (r.team ? r.team->name : std::string()) + ":" + r.team_period,
                                prefix_ + "rate:tok:" + k.name, prefix_ + "res:" + r.request_id};
  std::vector<std::string> args{std::to_string(cost), std::to_string(tokens), std::to_string(k.tokens_per_minute),
                                k.budget.set() ? "1" : "0", team_budget ? "1" : "0"};
  const redis_reply reply = co_await run_script(settle_script, settle_sha1_, std::move(keys), std::move(args));
  if (!reply.ok || reply.value.type == resp::value::kind::error) {
    // The reservation stays charged (it expires with its record): the safe side of a lost settlement.
    log_line(policies::log_level::error, "could not settle request %s in redis: %s", r.request_id.c_str(),
             reply.ok ? reply.value.text.c_str() : reply.error.c_str());
  }
}

}  // namespace sluice::gateway
