// Pre-tokenizer: splits text into the "words" that byte-level BPE merges within, emulating the split
// regexes that tokenizer.ggml.pre names (as llama.cpp applies them). Written as hand-rolled scanners, not
// std::regex: std::regex has no Unicode classes (\p{L}, \p{N}) and is far too slow for the hot path.
// What must not go in here: BPE merging, special tokens (tokenizer.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace sluice::engine {

enum class pre_kind {
  gpt2,            // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
  smollm,          // every \p{N} code point on its own first, then gpt2 within each piece (SmolLM, StarCoder)
  llama3,          // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
                   //   \s*[\r\n]+|\s+(?!\S)|\s+
  qwen2,           // as llama3 but \p{N} (one digit per word)
  legacy_default,  // llama.cpp's chain for files that name no pre-tokenizer: isolate [\p{P}$+<=>^~|]+, then
                   //   gpt2, then isolate \p{N}+, then isolate [0-9]{3} (left to right)
};

// Maps tokenizer.ggml.pre to a kind (names as llama.cpp knows them); nullopt when unknown. "" and "default"
// map to legacy_default, as in llama.cpp.
std::optional<pre_kind> pre_kind_from_name(std::string_view name);

// A word as a half-open range of code point indices.
struct word_span {
  uint32_t begin, end;
};

// Splits cpts into words (appended to out, in order, covering every code point exactly once).
void split_words(pre_kind kind, std::span<const char32_t> cpts, std::vector<word_span>& out);

}  // namespace sluice::engine
