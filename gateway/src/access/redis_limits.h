// The limits store shared by every replica: counts in Redis, each reservation and settlement one Lua script run
// atomically by Redis (EVALSHA, EVAL when the script cache was flushed). Same rules as memory_limits (limits.h),
// with Redis's clock (TIME) for the token buckets so that replicas agree on it. Keys (under the policy's
// key_prefix): budget:key:<name>:<period>, budget:team:<name>:<period> (integers, nano-USD, expiring two days
// after their period), rate:req:<name>, rate:tok:<name> (hashes: level, time), res:<request id> (an open
// reservation, 24 h). What must not go in here: the fallback when Redis is down (the caller applies on_error).
#pragma once

#include <memory>

#include "access/limits.h"
#include "access/redis_client.h"

namespace sluice::gateway {

class redis_limits final : public limits_store {
 public:
  redis_limits(std::shared_ptr<redis_client> client, std::string key_prefix);
  task<admission> reserve(const reservation& r) override;
  task<void> settle(const reservation& r, nano_usd cost, int64_t tokens) override;
  void abandon(const reservation&) override {}  // (its record expires after 24 h; the charge stays)
  const char* name() const override { return "redis"; }

 private:
  // Runs a script by its SHA-1, loading it with EVAL when Redis does not know it.
  task<redis_reply> run_script(std::string_view script, const std::string& sha1, std::vector<std::string> keys,
                               std::vector<std::string> args);
  std::shared_ptr<redis_client> client_;
  std::string prefix_;
  std::string reserve_sha1_, settle_sha1_;
};

}  // namespace sluice::gateway
