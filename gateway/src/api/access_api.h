// The gateway keys on the request path: 401 for a missing or wrong key, 403 for a route or model the key may
// not use, the reservation before dispatch (429 when a budget or rate limit refuses, 503 when the limits store
// is down and the policy fails closed), OpenAI's x-ratelimit-* headers, and the settlement afterwards.
// What must not go in here: the counting rules (access/limits.h), key lookup (access/access.h).
#pragma once

#include <memory>

#include "access/access.h"
#include "http/executor.h"
#include "sluice/router/chat.h"

namespace sluice::gateway {

class http_session;
class header_block;

// A request admitted for a key: what it reserved and what the store said.
struct key_grant {
  std::shared_ptr<access_control> access;
  const policies::key_config* key = nullptr;
  reservation reserved;
  admission said;
  bool counted = true;  // false: served uncounted (the store was down and the policy fails open)
  bool settled = false;
  key_grant() = default;
  key_grant(const key_grant&) = delete;
  key_grant& operator=(const key_grant&) = delete;
  // A grant never settled (a path that forgot, or a coroutine destroyed at exit) stays charged in full.
  ~key_grant() {
    if (counted && !settled && access) access->store().abandon(reserved);
  }
};

// Checks the request's key when the policy has keys (`key` is set, or null on an open gateway). Returns false
// after sending the 401 (then `again` says whether the connection stays open).
task<bool> authenticate(http_session& s, const policies::key_config*& key, bool& again);

// For /metrics when the policy has admin keys: an admin key is required (401 without a valid one, 403 for a
// key that is not an admin key). Returns false after sending the refusal.
task<bool> authenticate_admin(http_session& s, bool& again);

// Reserves `req`'s worst case for `key`. Returns the grant, or null after sending the refusal (403 for a route
// or model the key may not use, 429, 503).
task<std::unique_ptr<key_grant>> admit(http_session& s, const policies::key_config& key,
                                       const router::chat_request& req, size_t body_bytes, bool& again);

// The rate-limit and budget headers of an admitted request.
void add_limit_headers(header_block& h, const key_grant& g);

// Settles the grant once the request is over (at most once): `c` is the completion served (its cost and
// tokens), or null: `release` true gives the whole reservation back (the request failed before any backend
// produced anything), false keeps it charged (a request cut mid-way may have cost anything up to it).
void settle(http_session& s, key_grant& g, const router::completion* c, bool release);

}  // namespace sluice::gateway
