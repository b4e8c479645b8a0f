// Parses the http(s) base URLs of upstreams from the policy.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice::gateway {

struct http_url {
  bool tls = false;
  std::string host;  // without brackets for IPv6
  std::string port;  // always set ("80"/"443" by default)
  std::string path;  // without trailing slash, "" for the root
  std::string host_header() const;  // host[:port] as sent in Host
};

std::optional<http_url> parse_http_url(std::string_view url);

}  // namespace sluice::gateway
