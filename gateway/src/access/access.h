// Who may call the gateway and how much they may spend: API keys (the policy holds only their SHA-256), the
// allow list of routes and models per key, and the worst case a request reserves in the limits store (limits.h).
// Built once per policy. What must not go in here: HTTP responses (api/ writes them), counting (the store).
#pragma once

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "access/limits.h"
#include "sluice/policies/policy.h"
#include "sluice/router/chat.h"

namespace sluice::gateway {

struct incoming_request;

// SHA-256 of `text`.
std::array<uint8_t, 32> sha256(std::string_view text);
// A new secret: "sk-sluice-" and 43 base64url characters (32 random bytes from the OS).
std::string new_api_key();
std::string to_hex(const std::array<uint8_t, 32>& digest);

enum class auth_failure { none, missing, invalid, in_url, conflicting };
const char* to_string(auth_failure f);  // metric label: missing | invalid | in_url | conflicting

class access_control {
 public:
  // The store is memory_limits, or redis_limits when the policy names a Redis (its password read from the
  // environment here). Errors (a password variable that is unset) come back in `error`.
  // `previous` (a reload): its in-process store is kept, so that budgets and rate limits carry over.
  static std::unique_ptr<access_control> create(const policies::policy& p, size_t io_threads, std::string& error,
                                                const access_control* previous = nullptr);

  // The key a request presents (Authorization: Bearer, or x-api-key), checked against the policy's hashes. A
  // key in the URL's query is refused even when it is valid: URLs end up in logs.
  auth_failure authenticate(const incoming_request& req, const policies::key_config*& key) const;

  // Whether `key` may use `name` (a route or model of the policy).
  static bool allows(const policies::key_config& key, std::string_view name);

  // The worst case of `req` for `key`: every tier the request may reach (a route's cascade may run them all),
  // prompt tokens bounded by the body's bytes (a byte-level BPE token is at least one byte), output by
  // max_tokens x n (or the key's reserve_max_tokens when the request sets none), priced at the dearest input
  // price of each tier. Its tokens (for tokens_per_minute) estimate the prompt at four bytes per token.
  reservation worst_case(const policies::policy& p, const policies::key_config& key, const router::chat_request& req,
                         size_t body_bytes) const;

  limits_store& store() { return *store_; }
  bool fail_open() const { return fail_open_; }

 private:
  struct digest_hash {
    size_t operator()(const std::array<uint8_t, 32>& d) const {
      size_t h;
      std::memcpy(&h, d.data(), sizeof h);
      return h;
    }
  };
  std::unordered_map<std::array<uint8_t, 32>, const policies::key_config*, digest_hash> keys_;
  std::shared_ptr<limits_store> store_;
  bool fail_open_ = false;
};

}  // namespace sluice::gateway
