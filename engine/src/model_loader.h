// Opens a GGUF model file and builds everything the engine needs from it: the llama weights and the
// tokenizer metadata. What must not go in here: compute, scheduling.
#pragma once

#include <memory>
#include <string>

#include "llama_model.h"
#include "tokenizer.h"

namespace sluice::engine {

struct loaded_model {
  std::unique_ptr<llama_model> model;
  tokenizer_data tok;
};

// errc::io (cannot open/map), errc::bad_file (malformed), errc::unsupported (architecture, tensor type).
result<loaded_model> load_model_file(const std::string& path);

}  // namespace sluice::engine
