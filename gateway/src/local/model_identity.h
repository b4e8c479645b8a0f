// The identity of a local model file: the SHA-256 of its bytes. An acceptance model is only valid for the local
// model whose answers trained it; the model file stores this identity and serving compares it.
// What must not go in here: loading or running the model (local_backend.h).
#pragma once

#include <string>

#include "sluice/router/error.h"

namespace sluice::gateway {

// "sha256:<64 lowercase hex digits>" of the whole file, read in 1 MiB pieces. Errors (missing file, not a GGUF,
// read failure) name the path. Hashing a multi-GB model takes seconds: call it once at load, not per request.
router::result<std::string> gguf_identity(const std::string& path);

}  // namespace sluice::gateway
