// See http_url.h.
#include "http_url.h"

namespace sluice::gateway {

std::string http_url::host_header() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  if ((tls && port != "443") || (!tls && port != "80")) h += ":" + port;
  return h;
}

std::optional<http_url> parse_http_url(std::string_view url) {
  http_url u;
  if (url.starts_with("https://")) { u.tls = true; url.remove_prefix(8); }
  else if (url.starts_with("http://")) { url.remove_prefix(7); }
  else return std::nullopt;
  const size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    u.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty()) {
      if (authority.front() != ':') return std::nullopt;
      u.port = std::string(authority.substr(1));
    }
  } else {
    const size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  if (u.host.empty()) return std::nullopt;
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  for (char c : u.port) if (c < '0' || c > '9') return std::nullopt;
  if (u.port.size() > 5 || std::stoi(u.port) == 0 || std::stoi(u.port) > 65535) return std::nullopt;
  if (path.find_first_of("?#") != std::string_view::npos) return std::nullopt;
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  u.path = std::string(path);
  return u;
}

}  // namespace sluice::gateway
