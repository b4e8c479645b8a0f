// SHA-256 of a GGUF file through OpenSSL's EVP interface (the gateway already links libcrypto for TLS), streamed so
// that a model larger than memory hashes in constant space.
#include "local/model_identity.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace sluice::gateway {

namespace {

router::error identity_error(const std::string& path, const std::string& what) {
  return router::error{router::errc::internal, "local model '" + path + "': " + what, {}};
}

struct file_closer {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
struct md_ctx_free {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

}  // namespace

router::result<std::string> gguf_identity(const std::string& path) {
  std::unique_ptr<std::FILE, file_closer> f(std::fopen(path.c_str(), "rb"));
  if (!f) return identity_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, md_ctx_free> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return identity_error(path, "cannot initialise SHA-256");
  std::vector<unsigned char> buf(size_t{1} << 20);  // 1 MiB per read
  bool first = true;
  for (;;) {
    const size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (first) {
      // Every GGUF starts with these four bytes; anything else is the wrong path, not a model to pin.
      if (n < 4 || std::memcmp(buf.data(), "GGUF", 4) != 0) return identity_error(path, "not a GGUF file (bad magic)");
      first = false;
    }
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) return identity_error(path, "SHA-256 update failed");
    if (n < buf.size()) {
      if (std::ferror(f.get())) return identity_error(path, "read error");
      break;
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) return identity_error(path, "SHA-256 final failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "sha256:";
  out.reserve(7 + 2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 15];
  }
  return out;
}

}  // namespace sluice::gateway
