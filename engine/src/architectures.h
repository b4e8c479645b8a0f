// The general.architecture values the engine runs (llama_model.cpp reads them; gguf.cpp names them when it
// reports an unsupported file). One list, so the two messages cannot disagree.
#pragma once

#include <string>
#include <string_view>

namespace sluice::engine {

inline constexpr std::string_view supported_architectures[] = {"llama", "qwen2", "qwen3", "gemma3"};

inline bool is_supported_architecture(std::string_view arch) {
  for (std::string_view a : supported_architectures)
    if (a == arch) return true;
  return false;
}

// "llama, qwen2, qwen3, gemma3"
inline std::string supported_architectures_text() {
  std::string s;
  for (std::string_view a : supported_architectures) s.append(s.empty() ? "" : ", ").append(a);
  return s;
}

}  // namespace sluice::engine
